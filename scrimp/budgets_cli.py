"""`scrimp budgets`: each configured budget's counters, spent, reserved, remaining and reset."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click


@click.command("budgets")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The gateway's config (its budgets stage says where the budget state is).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per counter.")
def budgets(config_path: str, as_json: bool) -> None:
    """List each budget's spent, reserved and remaining amounts and when it resets."""
    from scrimp.budgets.stage import BudgetsOptions, BudgetsStage
    from scrimp.gateway.config import ConfigError, load
    from scrimp.options import parse_options

    try:
        cfg = load(config_path, models_required=False)
        found = [(s, w) for s, w in zip(cfg.stages, cfg.stage_wheres, strict=False) if s.get("name") == "budgets"]
        if not found:
            raise click.ClickException(f"{config_path} has no budgets stage")
        section, where = found[0]
        options = parse_options(BudgetsOptions, {k: v for k, v in section.items() if k != "name"}, where)
    except ConfigError as exc:
        raise click.ClickException(f"config refused: {exc}") from exc
    keys = _key_budgets(config_path) if options.key_budgets else {}
    rows: list[dict[str, Any]] = asyncio.run(BudgetsStage(options, None).status(time.time(), keys))  # type: ignore[arg-type]
    if as_json:
        import orjson

        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    if not rows:
        click.echo("no budgets configured")
        return
    click.echo(f"{'budget':<20} {'scope':<24} {'period':<7} {'limit $':>10} {'spent $':>12} {'reserved $':>12} "
               f"{'remaining $':>12}  resets")
    for r in rows:
        click.echo(f"{r['budget']:<20} {r['scope'] or '-':<24} {r['period']:<7} {r['limit_usd']:>10.4f} "
                   f"{r['spent_usd']:>12.6f} {r['reserved_usd']:>12.6f} {r['remaining_usd']:>12.6f}  {r['resets_at']}")


def _key_budgets(config_path: str) -> dict[str, tuple[float, str | None]]:
    """The budgets stored with the gateway keys this config's gateway accepts: those in its ledger's database
    and those its `auth.keys` lists (none when it has neither)."""
    from scrimp.keys_cli import _open

    try:
        store, config_keys = _open(config_path, None, None, None, must_exist=True)
    except click.ClickException:
        return {}  # no ledger database: no stored keys
    try:
        records = config_keys + store.list()
    finally:
        store.close()
    return {k.id: (k.budget_usd, k.budget_period) for k in records if k.budget_usd and not k.revoked}
