"""`scrimp trim eval`: what the trim stage would do to public data sets, decided as the gateway decides."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group("trim")
def trim() -> None:
    """Context trimming (the `trim` stage): offline evaluation."""


def load_options(config: str | None):
    """The trim stage's options from a gateway config (its `trim` section), or the shipped defaults."""
    from scrimp.options import Where, parse_options
    from scrimp.trim.options import TrimOptions

    if config is None:
        return TrimOptions()
    from scrimp.gateway.config import ConfigError, load

    try:
        cfg = load(config, models_required=False)
    except ConfigError as exc:
        raise click.ClickException(f"config refused: {exc}") from exc
    for entry, where in zip(cfg.stages, cfg.stage_wheres, strict=True):
        if entry["name"] == "trim":
            return parse_options(TrimOptions, {k: v for k, v in entry.items() if k != "name"}, where)
    click.echo(f"{config}: no trim stage configured; using the shipped defaults", err=True)
    return parse_options(TrimOptions, {}, Where(config))


def read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with Path(path).open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise click.ClickException(f"{path}, line {n}: not JSON ({exc.msg})") from exc
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from exc
    return rows


def evaluate(kind: str, rows: list[dict], options, feature: str | None = None, progress: bool = False) -> dict:
    from scrimp.embedding import shared_minilm
    from scrimp.trim.evaluate import history_examples, rag_examples, summarise
    from scrimp.trim.relevance import VectorCache
    from scrimp.trim.trimmer import Trimmer

    policy = options.policy(feature)
    trimmer = Trimmer(policy, VectorCache(shared_minilm()))
    run = rag_examples if kind == "rag" else history_examples
    total = len(rows) if kind == "rag" else sum(len(c.get("questions", [])) for c in rows)
    required = ("chunks", "question") if kind == "rag" else ("turns", "questions", "speakers")
    for n, row in enumerate(rows, 1):
        missing = [k for k in required if k not in row]
        if missing:
            raise click.ClickException(f"line {n}: not the {kind} format (missing {', '.join(missing)})")
    with click.progressbar(length=total, label=f"trim eval {kind}", file=sys.stderr,
                           hidden=not progress) as bar:
        examples = list(run(rows, policy, trimmer, tick=lambda: bar.update(1)))
    return summarise(examples)


@trim.command("eval")
@click.option("--kind", type=click.Choice(["rag", "history"]), required=True)
@click.option("--data", "data", required=True, help="a JSONL file (hotpotqa format for rag, locomo for history)")
@click.option("--config", default=None, help="a gateway config; its trim section decides (else the defaults)")
@click.option("--feature", default=None, help="evaluate this feature's policy")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def eval_cmd(kind: str, data: str, config: str | None, feature: str | None, as_json: bool) -> None:
    """Share of tokens removed and of gold chunks / evidence turns kept, deciding as the gateway would."""
    options = load_options(config)
    rows = read_jsonl(data)
    result = {"kind": kind, **evaluate(kind, rows, options, feature, progress=sys.stderr.isatty())}
    if as_json:
        click.echo(json.dumps(result))
        return
    what = "gold chunks kept" if kind == "rag" else "evidence turns kept verbatim"
    unit = "chunk tokens" if kind == "rag" else "history tokens"
    click.echo(f"{result['examples']} examples: {result['token_reduction']:.1%} of {unit} removed, "
               f"{result['evidence_recall']:.1%} of {what} ({result['evidence']} in all); "
               f"trim time p50 {result['latency_ms_p50']} ms, p99 {result['latency_ms_p99']} ms")


__all__ = ["trim"]
