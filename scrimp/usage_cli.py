"""`scrimp usage`: spend, calls, tokens, cache hits and savings from the ledger."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--db", default=None, help="SQLite ledger file (default: the config's, or scrimp-ledger.db).")
@click.option("--dsn", default=None, help="PostgreSQL DSN of a shared ledger.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="scrimp.yaml")
@click.option("--by", type=click.Choice(["feature", "model", "user", "tenant", "day", "cache", "lever", "key"]),
              default="feature", show_default=True)
@click.option("--since", default=None, help="7d, 12h, or a date (2026-11-01).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@click.option("--prompt-cache", is_flag=True, help="Per feature: prompt-cache hit ratio, write cost vs read "
              "savings, and what keeps busting the cache.")
@click.option("--output", "output_control", is_flag=True, help="Per feature: output caps (calls capped, truncation "
              "and continuation rates) and structured output (invalid, repaired, fallback, failed answers).")
def usage(db: str | None, dsn: str | None, config_path: str | None, by: str, since: str | None,
          as_json: bool, prompt_cache: bool, output_control: bool = False) -> None:
    """Roll the ledger up by feature, model, user, tenant, day, cache (miss/exact/semantic), lever or gateway
    key."""
    from pathlib import Path

    from scrimp.ledger.rollup import parse_since
    from scrimp.ledger.rollup import usage as rollup
    from scrimp.ledger.store import PostgresLedger, SQLiteLedger

    section: dict = {}
    if config_path:
        from scrimp.gateway.config import ConfigError, load

        try:
            section = next((s for s in load(config_path, models_required=False).stages if s["name"] == "ledger"), {})
        except ConfigError as exc:
            raise click.ClickException(f"config refused: {exc}") from exc
    if dsn or section.get("dsn"):
        store = PostgresLedger(dsn or section["dsn"], section.get("schema", "public"))
    else:
        path = db or section.get("path", "scrimp-ledger.db")
        if not Path(path).exists():
            raise click.ClickException(f"no ledger at {path}: run the gateway first, or pass --db/--dsn")
        store = SQLiteLedger(path)
    try:
        since_ts = parse_since(since)
        if prompt_cache:
            _prompt_cache(store, since_ts, as_json)
            return
        if output_control:
            _output_control(store, since_ts, as_json)
            return
        rows = rollup(store, by, since_ts)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        if by == "key" and "key_id" in str(exc):  # a ledger no gateway of this version has opened yet
            raise click.ClickException("this ledger has no key_id column yet: start the gateway on it once (it "
                                       "migrates the ledger)") from exc
        raise
    if by == "key":
        _name_keys(store, rows)
    if by == "lever":
        _levers(rows, as_json)
        return
    totals = {k: sum(r[k] for r in rows) for k in ("calls", "cost_usd", "baseline_usd", "saved_usd",
                                                    "input_tokens", "output_tokens", "cache_hits")}
    from scrimp.audit.headline import per_success, trend_text

    groups, overall = per_success(store, by, since_ts)  # the headline: cost per successful request, its trend
    for r in rows:
        r.update(groups.get(r[by], {}))
    totals.update(overall)
    if as_json:
        click.echo(json.dumps({"by": by, "rows": rows, "totals": totals}, indent=2))
        return
    if not rows:
        click.echo("no calls recorded in that period")
        return
    per = overall["cost_per_success_usd"]
    click.echo(f"cost per successful request: {'-' if per is None else f'${per:.6f}'} "
               f"(trend {trend_text(overall['trend'])}: second half of the period against the first)\n")
    header = (f"{by:<24}{'calls':>8}{'cost $':>12}{'$/success':>11}{'trend':>7}{'saved $':>12}{'saved %':>9}"
              f"{'in tok':>11}{'out tok':>10}{'hits':>7}")
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows + [{by: "TOTAL", **totals, "cache_hits": totals["cache_hits"]}]:
        pct = 100 * r["saved_usd"] / r["baseline_usd"] if r["baseline_usd"] else 0.0
        label = f"{r[by]} {r.get('key_name') or r.get('key_tenant') or ''}" if by == "key" else str(r[by])
        each = r.get("cost_per_success_usd")
        click.echo(f"{label[:23]:<24}{r['calls']:>8}{r['cost_usd']:>12.4f}{'-' if each is None else f'{each:.6f}':>11}"
                   f"{trend_text(r.get('trend')):>7}{r['saved_usd']:>12.4f}{pct:>8.1f}%"
                   f"{r['input_tokens']:>11}{r['output_tokens']:>10}{r['cache_hits']:>7}")


def _name_keys(store, rows: list[dict]) -> None:
    """Each key's name and tenant beside its id, from the keys this ledger's database holds (if any)."""
    try:
        known = {kid: (name, tenant) for kid, name, tenant in store.query("SELECT id, name, tenant FROM gateway_keys")}
    except Exception:  # noqa: BLE001 - no keys table: ids only (keys listed in a config, or none)
        known = {}
    for r in rows:
        name, tenant = known.get(r["key"], (None, None))
        r["key_name"], r["key_tenant"] = name, tenant


def _levers(rows: list[dict], as_json: bool) -> None:
    """Each lever's savings and the costs it incurred besides (a call with two levers counts under both)."""
    totals = {k: sum(r[k] for r in rows) for k in ("gross_saving_usd", "extra_cost_usd", "saved_usd")}
    if as_json:
        click.echo(json.dumps({"by": "lever", "rows": rows, "totals": totals}, indent=2))
        return
    if not rows:
        click.echo("no lever saved anything in that period")
        return
    header = f"{'lever':<24}{'calls':>8}{'saved $':>12}{'extra cost $':>14}{'net $':>12}"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(f"{r['lever'][:23]:<24}{r['calls']:>8}{r['gross_saving_usd']:>12.6f}{r['extra_cost_usd']:>14.6f}"
                   f"{r['saved_usd']:>12.6f}")
    click.echo(f"{'TOTAL':<24}{'':>8}{totals['gross_saving_usd']:>12.6f}{totals['extra_cost_usd']:>14.6f}"
               f"{totals['saved_usd']:>12.6f}")


def _prompt_cache(store, since: float | None, as_json: bool) -> None:
    from scrimp.promptcache.report import prompt_cache_report

    rows = prompt_cache_report(store, since)
    if as_json:
        click.echo(json.dumps({"prompt_cache": rows}, indent=2))
        return
    if not rows:
        click.echo("no provider calls recorded in that period")
        return
    header = (f"{'feature':<20}{'calls':>7}{'hit ratio':>10}{'read tok':>11}{'write tok':>11}"
              f"{'write +$':>10}{'read -$':>10}{'net $':>10}")
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(f"{r['feature'][:19]:<20}{r['calls']:>7}{100 * r['hit_ratio']:>9.1f}%{r['cache_read_tokens']:>11}"
                   f"{r['cache_write_tokens']:>11}{r['write_premium_usd']:>10.4f}{r['read_savings_usd']:>10.4f}"
                   f"{r['net_saving_usd']:>10.4f}")
    for r in rows:
        for kind, b in r["busters"].items():
            click.echo(f"cache buster in {r['feature']}: {kind} ({b['count']} calls, e.g. {b['example']!r}) "
                       f"kept {b['tokens_lost']} tokens out of the cache, ~${b['cost_usd']:.4f}")


def _output_control(store, since: float | None, as_json: bool) -> None:
    from scrimp.outputcap.report import output_cap_report
    from scrimp.structured.report import structured_report

    caps, checks = output_cap_report(store, since), structured_report(store, since)
    if as_json:
        click.echo(json.dumps({"output_cap": caps, "structured": checks}, indent=2))
        return
    if not caps and not checks:
        click.echo("no capped or structured-output calls recorded in that period")
        return
    header = (f"{'feature':<20}{'capped':>8}{'trunc %':>9}{'cont %':>8}{'schema':>8}{'invalid':>9}{'repaired':>10}"
              f"{'fallback':>10}{'failed':>8}")
    click.echo(header)
    click.echo("-" * len(header))
    for feature in sorted(set(caps) | set(checks)):
        c = caps.get(feature, {"capped": 0, "truncation_rate": 0.0, "continuation_rate": 0.0})
        k = checks.get(feature, {"checked": 0, "invalid": 0, "repaired": 0, "fallback": 0, "failed": 0})
        click.echo(f"{feature[:19]:<20}{c['capped']:>8}{100 * c['truncation_rate']:>8.1f}%"
                   f"{100 * c['continuation_rate']:>7.1f}%{k['checked']:>8}{k['invalid']:>9}{k['repaired']:>10}"
                   f"{k['fallback']:>10}{k['failed']:>8}")
