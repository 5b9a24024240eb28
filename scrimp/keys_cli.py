"""`scrimp keys`: create, list and revoke gateway keys in the ledger's database; generate one for the config."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from scrimp.auth.keys import SHOWN, KeyRecord, KeyStore, check_name, new_secret, sha256_hex


def _where(f: Any) -> Any:
    f = click.option("--schema", default=None, help="PostgreSQL schema (with --dsn; default: public).")(f)
    f = click.option("--dsn", default=None, help="PostgreSQL DSN of the ledger's database.")(f)
    f = click.option("--db", default=None, help="SQLite file of the ledger (instead of --config).")(f)
    return click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                        help="scrimp.yaml: the keys live in its ledger stage's database.")(f)


def _open(config_path: str | None, db: str | None, dsn: str | None, schema: str | None, *,
          must_exist: bool) -> tuple[KeyStore, list[KeyRecord]]:
    """The key store the gateway of this config reads (and the keys its config lists)."""
    from scrimp.ledger.store import open_store

    config_keys: list[KeyRecord] = []
    section: dict[str, Any] = {}
    if config_path:
        from scrimp.auth.resolver import KeyResolver
        from scrimp.gateway.config import ConfigError, load

        try:
            cfg = load(config_path, models_required=False)
        except ConfigError as exc:
            raise click.ClickException(f"config refused: {exc}") from exc
        section = next((s for s in cfg.stages if s["name"] == "ledger"), {})
        if cfg.auth is not None:
            config_keys = list(KeyResolver(cfg.auth, None).config_keys.values())
        if not section and not (db or dsn):
            raise click.ClickException(f"{config_path} has no ledger stage, and keys are kept in the ledger's "
                                       "database: add one, or list keys in the config's auth.keys "
                                       "(scrimp keys generate).")
    elif not (db or dsn):
        raise click.ClickException("say where the keys live: --config FILE (its ledger's database), --db FILE or "
                                   "--dsn DSN")
    if dsn or section.get("dsn"):
        ledger = open_store({"dsn": dsn or section["dsn"], "schema": schema or section.get("schema", "public")})
    else:
        path = db or section.get("path", "scrimp-ledger.db")
        if path == ":memory:":
            raise click.ClickException("the ledger is in memory: keys need a database file or a DSN, or list "
                                       "them in the config's auth.keys (scrimp keys generate)")
        if must_exist and not Path(path).exists():
            raise click.ClickException(f"no ledger at {path}: no key was created there")
        ledger = open_store({"path": path})
    store = KeyStore.of_ledger(ledger)
    assert store is not None
    return store, config_keys


def _names(tenant: str, feature: str | None) -> None:
    try:
        check_name(tenant, "--tenant")
        if feature is not None:
            check_name(feature, "--feature")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _budget(budget_usd: float | None, period: str | None) -> None:
    if (budget_usd is None) != (period is None):
        raise click.UsageError("--budget-usd and --period go together")
    if budget_usd is not None and budget_usd <= 0:
        raise click.BadParameter("--budget-usd must be positive")


@click.group()
def keys() -> None:
    """Gateway keys (docs/auth.md): each bound to a tenant, stored only as a hash."""


_binding = [
    click.option("--tenant", required=True, help="The tenant every call with this key is served as."),
    click.option("--name", default=None, help="A label (who or what uses the key)."),
    click.option("--feature", default=None, help="Attribute every call with this key to this feature."),
    click.option("--may-set-tenant", is_flag=True, help="Let the key name the tenant per request (x-scrimp-tenant "
                 "or metadata.tenant): an application server serving many tenants."),
    click.option("--budget-usd", type=float, default=None, help="A budget stored with the key (NOT enforced yet)."),
    click.option("--period", type=click.Choice(["day", "month"]), default=None, help="The budget's period."),
]


def _binding_options(f: Any) -> Any:
    for option in reversed(_binding):
        f = option(f)
    return f


@keys.command()
@_where
@_binding_options
def create(config_path: str | None, db: str | None, dsn: str | None, schema: str | None, tenant: str,
           name: str | None, feature: str | None, may_set_tenant: bool, budget_usd: float | None,
           period: str | None) -> None:
    """Make a key and print it once, alone on the last line (only its SHA-256 is stored)."""
    _names(tenant, feature)
    _budget(budget_usd, period)
    store, _ = _open(config_path, db, dsn, schema, must_exist=False)
    try:
        secret, rec = store.create(tenant, name=name, feature=feature, may_set_tenant=may_set_tenant,
                                   budget_usd=budget_usd, budget_period=period)
    except Exception as exc:
        raise click.ClickException(f"could not store the key in {store.where}: {type(exc).__name__}: {exc}") from exc
    finally:
        store.close()
    click.echo(f"created {rec.id} for tenant {rec.tenant}" + (f" ({rec.name})" if rec.name else "")
               + (f", feature {rec.feature}" if rec.feature else "") + (", may set the tenant" if may_set_tenant
                                                                           else ""))
    if budget_usd is not None:
        click.echo(f"budget: ${budget_usd:g} per {period} (enforced by the budgets stage when the gateway lists one)")
    click.echo(f"stored in {store.where}; this is the only time the key is shown:")
    click.echo(secret)


@keys.command(name="list")
@_where
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def list_keys(config_path: str | None, db: str | None, dsn: str | None, schema: str | None, as_json: bool) -> None:
    """Every key (never a secret): id, prefix, name, tenant, feature, may-set-tenant, created, revoked."""
    store, config_keys = _open(config_path, db, dsn, schema, must_exist=not config_path)
    try:
        records = store.list() + config_keys
    except Exception as exc:
        raise click.ClickException(f"could not read keys from {store.where}: {type(exc).__name__}: {exc}") from exc
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"keys": [r.public() for r in records]}, indent=2))
        return
    if not records:
        click.echo("no keys")
        return
    header = (f"{'id':<18}{'prefix':<19}{'name':<16}{'tenant':<16}{'feature':<12}{'sets tenant':<12}"
              f"{'budget':<14}{'created':<18}{'revoked':<18}")
    click.echo(header)
    click.echo("-" * len(header))
    for r in records:
        budget = f"${r.budget_usd:g}/{r.budget_period}" if r.budget_usd is not None else "-"
        click.echo(f"{r.id:<18}{(r.prefix + '...') if r.prefix else '-':<19}{_cut(r.name, 15):<16}{_cut(r.tenant, 15):<16}"
                   f"{_cut(r.feature, 11):<12}{'yes' if r.may_set_tenant else 'no':<12}{budget:<14}"
                   f"{_when(r.created_at) if r.source == 'database' else '(config)':<18}{_when(r.revoked_at):<18}")


@keys.command()
@click.argument("key_id")
@_where
def revoke(key_id: str, config_path: str | None, db: str | None, dsn: str | None, schema: str | None) -> None:
    """Revoke a key: refused from then on (by every replica within auth.key_cache_ttl_s, 5 s by default)."""
    store, config_keys = _open(config_path, db, dsn, schema, must_exist=True)
    if any(k.id == key_id for k in config_keys):
        store.close()
        raise click.ClickException(f"{key_id} is listed in the config: remove it from auth.keys to revoke it")
    try:
        rec = store.revoke(key_id)
    finally:
        store.close()
    if rec is None:
        raise click.ClickException(f"no key with id {key_id!r} (scrimp keys list shows them)")
    click.echo(f"revoked {rec.id} ({rec.prefix}..., tenant {rec.tenant}) at {_when(rec.revoked_at)}")


@keys.command()
@_binding_options
def generate(tenant: str, name: str | None, feature: str | None, may_set_tenant: bool, budget_usd: float | None,
             period: str | None) -> None:
    """Make a key for the config's auth.keys (no database): prints the entry to paste, then the key, alone on
    the last line."""
    _names(tenant, feature)
    _budget(budget_usd, period)
    secret = new_secret()
    entry: dict[str, Any] = {"key_sha256": sha256_hex(secret), "tenant": tenant}
    entry.update({k: v for k, v in {"name": name, "feature": feature, "budget_usd": budget_usd,
                                    "period": period}.items() if v is not None})
    if may_set_tenant:
        entry["may_set_tenant"] = True
    click.echo("add to the config's auth.keys:")
    click.echo("  - {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in entry.items()) + "}")
    click.echo(f"this is the only time the key is shown (it starts {secret[:SHOWN]}):")
    click.echo(secret)


def _cut(value: str | None, width: int) -> str:
    value = value or "-"
    return value if len(value) <= width else value[:width - 1] + "~"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"
