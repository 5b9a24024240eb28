"""`scrimp simulate`: what another config would have cost on the request log's real traffic."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The config to try (its models and stages; its stores are never touched).")
@click.option("--since", default="7d", show_default=True, help="7d, 12h, or a date (2026-11-01).")
@click.option("--db", default=None, help="SQLite ledger whose request log is replayed (default: the config's).")
@click.option("--dsn", default=None, help="PostgreSQL DSN of the ledger whose request log is replayed.")
@click.option("--schema", default=None, help="PostgreSQL schema of that ledger.")
@click.option("--tenant", default=None, help="Replay one tenant's calls only.")
@click.option("--sim-config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Simulator settings for the models (latency, limits, faults); see docs/simulator.md.")
@click.option("--json", "as_json", is_flag=True, help="The comparison as one JSON object.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def simulate(config_path: str, since: str, db: str | None, dsn: str | None, schema: str | None,
             tenant: str | None, sim_config: str | None, as_json: bool, no_progress: bool) -> None:
    """Replay the logged calls of a period through another config's pipeline, against the provider simulator
    (no provider call), and compare cost, per-lever savings, cache hit rates, share routed and the answers
    that would change with what happened."""
    from scrimp.audit.replay import simulate as run
    from scrimp.audit.source import SourceError, open_ledger
    from scrimp.cli import load_config
    from scrimp.ledger.rollup import parse_since

    try:
        config = load_config(config_path, models_required=True)
        store = open_ledger(db, dsn, config, schema)
        since_ts = parse_since(since)
        base = None
        if sim_config:
            from scrimp.sim.config import ConfigError as SimConfigError
            from scrimp.sim.config import load_config as load_sim

            try:
                base = load_sim(sim_config)
            except SimConfigError as exc:
                raise SourceError(f"{sim_config}: {exc}") from exc
        if not _has_log(store):
            raise SourceError("this ledger has no request log to replay: turn it on with `- request_log: "
                              "{features: ['*']}` (docs/request-log.md) and let traffic come in")
        from scrimp.gateway.app import Gateway

        result = run(store, config, since_ts, tenant=tenant, sim_base=base, progress=not no_progress and not as_json,
                     gateway=Gateway)
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(render(result))


def _has_log(store) -> bool:
    try:
        store.query("SELECT 1 FROM request_log LIMIT 1")
        return True
    except Exception:  # noqa: BLE001 - no such table
        return False


def render(result: dict) -> str:
    rec, sim = result["recorded"], result["simulated"]
    calls = result["calls"]

    def row(label: str, a: str, b: str) -> str:
        return f"{label:<30}{a:>16}{b:>16}"

    def pct(v: float) -> str:
        return f"{100 * v:.1f}%"

    lines = [(f"scrimp simulate: {calls['replayed']} logged calls replayed ({calls['failed']} failed under the "
             "other config)"), "", row("", "what happened", "simulated"),
             row("cost (USD)", f"{rec['cost_usd']:.6f}", f"{sim['cost_usd']:.6f}"),
             row("cost per successful request", f"{rec['cost_per_success_usd'] or 0:.6f}",
                 f"{sim['cost_per_success_usd'] or 0:.6f}"),
             row("cache hit rate", pct(rec["cache_hit_rate"]), pct(sim["cache_hit_rate"])),
             row("input read from prompt cache", pct(rec["prompt_cache_read_share"]),
                 pct(sim["prompt_cache_read_share"])),
             row("share routed to another model", pct(rec["routed_share"]), pct(sim["routed_share"])),
             row("latency p50 (ms)", f"{rec['latency_p50_ms'] or 0:.1f}", f"{sim['latency_p50_ms'] or 0:.1f}"),
             "", (f"difference: {result['saving_usd']:+.6f} USD "
                 f"({'saved' if result['saving_usd'] >= 0 else 'more'} under the other config)"), "",
             "saving per lever (USD):"]
    for lever in sorted(set(rec["by_lever"]) | set(sim["by_lever"])):
        lines.append(row(f"  {lever}", f"{rec['by_lever'].get(lever, 0.0):.6f}", f"{sim['by_lever'].get(lever, 0.0):.6f}"))
    lines += ["", "cost per feature (USD):"]
    for feature in sorted(set(rec["by_feature"]) | set(sim["by_feature"])):
        lines.append(row(f"  {feature}", f"{rec['by_feature'].get(feature, 0.0):.6f}",
                         f"{sim['by_feature'].get(feature, 0.0):.6f}"))
    q = result["quality_risk"]
    causes = ", ".join(f"{k} {v}" for k, v in sorted(q["by_cause"].items())) or "none"
    lines += ["", (f"quality risk: {q['changed']} answers ({pct(q['share'])}) would differ from what the client got "
                  f"(by cause: {causes})")]
    for stage, why in result["not_replayed"].items():
        lines.append(f"not replayed: {stage}: {why}")
    for what in result.get("replaced", []):
        lines.append(f"replaced: {what}")
    return "\n".join(lines)
