"""`scrimp batch status`: the batch lane's queue, read from the ledger's database (what is waiting, in flight,
failed to deliver), for an operator who wants to know whether the lane keeps up."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click


@click.group()
def batch() -> None:
    """The batch lane (stage `batch`, docs/batch.md)."""


@batch.command()
@click.option("--db", default=None, help="SQLite ledger file (default: the config's, or scrimp-ledger.db).")
@click.option("--dsn", default=None, help="PostgreSQL DSN of a shared ledger.")
@click.option("--schema", default=None, help="PostgreSQL schema (default: the config's, or public).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="scrimp.yaml")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def status(db: str | None, dsn: str | None, schema: str | None, config_path: str | None, as_json: bool) -> None:
    """Lines by state, the oldest waiting line, provider batches in flight, jobs and webhooks, the lease."""
    from scrimp.ledger.store import PostgresLedger, SQLiteLedger

    section: dict[str, Any] = {}
    if config_path:
        from scrimp.gateway.config import ConfigError, load

        try:
            section = next((s for s in load(config_path, models_required=False).stages if s["name"] == "ledger"), {})
        except ConfigError as exc:
            raise click.ClickException(f"config refused: {exc}") from exc
    if dsn or section.get("dsn"):
        store: Any = PostgresLedger(dsn or section["dsn"], schema or section.get("schema", "public"))
    else:
        path = db or section.get("path", "scrimp-ledger.db")
        if not Path(path).exists():
            raise click.ClickException(f"no ledger at {path}: run the gateway first, or pass --db/--dsn")
        store = SQLiteLedger(path)
    try:
        report = _report(store)
    except Exception as exc:
        if "batch_lines" in str(exc) or "no such table" in str(exc) or "does not exist" in str(exc):
            raise click.ClickException("this ledger has no batch lane tables: no gateway with a batch stage has "
                                       "used it") from exc
        raise
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    lines = report["lines"]
    click.echo(f"lines      queued {lines.get('queued', 0)}  (oldest waiting {report['oldest_queued_s']:.0f} s)  "
               f"submitted {lines.get('submitted', 0)}  job lines not yet run {lines.get('new', 0)}  "
               f"answered {lines.get('done', 0)}  answered, not yet recorded {report['unrecorded']}")
    batches = report["batches"]
    click.echo(f"batches    submitting {batches.get('submitting', 0)}  in flight {batches.get('submitted', 0)}  "
               f"ended {batches.get('ended', 0)}")
    jobs = report["jobs"]
    click.echo(f"jobs       open {jobs.get('open', 0)}  done {jobs.get('done', 0)}  webhooks undelivered "
               f"{report['webhooks_pending']}  webhooks given up {jobs.get('webhook_failed', 0)}")
    lease = report["lease"]
    click.echo("lease      " + (f"held, {lease['expires_in_s']:.0f} s left" if lease else "nobody holds it"))


def _report(store: Any) -> dict[str, Any]:
    now = time.time()

    def q(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return store.query(sql, params)

    lines = dict(q("SELECT state, COUNT(*) FROM batch_lines GROUP BY state"))
    oldest = q("SELECT MIN(created) FROM batch_lines WHERE state = 'queued'")[0][0]
    lease = q("SELECT expires FROM batch_lease WHERE name = 'worker'")
    return {
        "lines": lines,
        "oldest_queued_s": now - oldest if oldest else 0.0,
        "unrecorded": q("SELECT COUNT(*) FROM batch_lines WHERE recorded = 0 AND state = 'done'")[0][0],
        "batches": dict(q("SELECT state, COUNT(*) FROM batch_batches GROUP BY state")),
        "jobs": dict(q("SELECT state, COUNT(*) FROM batch_jobs GROUP BY state")),
        "webhooks_pending": q("SELECT COUNT(*) FROM batch_jobs WHERE state = 'done' AND webhook IS NOT NULL AND "
                              "delivered IS NULL")[0][0],
        "lease": {"expires_in_s": lease[0][0] - now} if lease and lease[0][0] > now else None,
    }
