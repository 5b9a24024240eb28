"""Which ledger a command reads: --db (SQLite), --dsn (PostgreSQL) or the ledger section of --config (a
config the command loaded: scrimp.cli.load_config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scrimp.ledger.store import LedgerStore, PostgresLedger, SQLiteLedger


class SourceError(ValueError):
    pass


def ledger_section(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return next((s for s in config.stages if s["name"] == "ledger"), {})


def open_ledger(db: str | None, dsn: str | None, config: Any = None, schema: str | None = None) -> LedgerStore:
    section = ledger_section(config)
    if dsn or section.get("dsn"):
        return PostgresLedger(dsn or section["dsn"], schema or section.get("schema", "public"))
    path = db or section.get("path", "scrimp-ledger.db")
    if not Path(path).exists():
        raise SourceError(f"no ledger at {path}: run the gateway first, or pass --db/--dsn")
    return SQLiteLedger(path)
