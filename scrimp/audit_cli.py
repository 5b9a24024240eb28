"""`scrimp audit`: the monthly cost review on the ledger (and the request log, when it is on)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--since", default="7d", show_default=True, help="7d, 12h, or a date (2026-11-01).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="scrimp.yaml: its ledger, its models' tiers and the stages already on.")
@click.option("--db", default=None, help="SQLite ledger file (default: the config's, or scrimp-ledger.db).")
@click.option("--dsn", default=None, help="PostgreSQL DSN of a shared ledger.")
@click.option("--schema", default=None, help="PostgreSQL schema of the ledger (default: the config's, or public).")
@click.option("--tenant", default=None, help="Audit one tenant's calls only.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report with its charts to this HTML file.")
def audit(since: str, config_path: str | None, db: str | None, dsn: str | None, schema: str | None,
          tenant: str | None, as_json: bool, html_path: str | None) -> None:
    """Walk the cost checklist over a period: spend and cost per successful request by feature, top prompts,
    cacheable repeats and what blocks caching, cheaper models, trimmable input, answers without max_tokens,
    batch-eligible and offloadable work, each with the dollars saved and the config line that turns it on."""
    from scrimp.audit import data
    from scrimp.audit.render_html import render as render_html
    from scrimp.audit.render_text import render as render_text
    from scrimp.audit.report import audit as run_audit
    from scrimp.audit.source import SourceError, open_ledger
    from scrimp.cli import load_config
    from scrimp.ledger.rollup import parse_since

    try:
        config = load_config(config_path)
        store = open_ledger(db, dsn, config, schema)
        traffic = data.load(store, parse_since(since), tenant=tenant,
                            stages=[s["name"] for s in config.stages] if config is not None else None)
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    tiers = {m.name: (m.provider, m.tier) for m in config.models.values()} if config is not None and config.models \
        else None
    report = run_audit(traffic, tiers)
    if html_path:
        Path(html_path).write_text(render_html(report))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(render_text(report))
        if html_path:
            click.echo(f"\nHTML report with charts: {html_path}")
