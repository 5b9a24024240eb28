"""Ledger schema and migrations, shared by SQLite and PostgreSQL (plain SQL both accept, or a function of the
cursor and the store where the dialects differ)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The calls table as migration 1 made it; later migrations add to COLUMNS below.
COLUMNS_V1 = [
    ("ts", "DOUBLE PRECISION NOT NULL"),  # unix seconds
    ("request_id", "TEXT NOT NULL"),
    ("tenant", "TEXT NOT NULL"),
    ("user_id", "TEXT"),
    ("feature", "TEXT"),
    ("inbound", "TEXT"),  # the wire format the client spoke
    ("requested_model", "TEXT"),
    ("served_model", "TEXT"),
    ("provider", "TEXT"),
    ("input_tokens", "BIGINT NOT NULL DEFAULT 0"),  # uncached input
    ("output_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_read_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_write_5m_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_write_1h_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("reasoning_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cost_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("baseline_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("saved_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("saving_stage", "TEXT"),  # the levers with a saving record on this call, largest first, comma-separated
    ("cache", "TEXT"),  # miss | exact | semantic
    ("decisions", "TEXT"),  # JSON
    ("latency_ms", "DOUBLE PRECISION"),
    ("ttft_ms", "DOUBLE PRECISION"),
    ("stream", "INTEGER NOT NULL DEFAULT 0"),
    ("status", "TEXT NOT NULL"),  # ok | error | client_cancelled
    ("error", "TEXT"),
]
COLUMNS = COLUMNS_V1 + [
    ("key_id", "TEXT"),  # migration 4: the gateway key the call came with (scrimp.auth), NULL without one
]
NAMES = [name for name, _ in COLUMNS]

# Other tables the ledger keeps: notable events (a drift guard tripping, ...) and shadow evaluations
# (a route's other model answering the same request in the background, and the score of the pair).
TABLES: dict[str, list[tuple[str, str]]] = {
    "calls": COLUMNS,
    "events": [("ts", "DOUBLE PRECISION NOT NULL"), ("kind", "TEXT NOT NULL"), ("route", "TEXT"),
               ("tenant", "TEXT"), ("feature", "TEXT"), ("detail", "TEXT")],
    "shadow": [("ts", "DOUBLE PRECISION NOT NULL"), ("request_id", "TEXT NOT NULL"), ("route", "TEXT NOT NULL"),
               ("tenant", "TEXT"), ("feature", "TEXT"), ("prompt", "TEXT NOT NULL"),
               ("cheap_model", "TEXT NOT NULL"), ("strong_model", "TEXT NOT NULL"), ("served", "TEXT NOT NULL"),
               ("cheap_answer", "TEXT"), ("strong_answer", "TEXT"), ("score", "DOUBLE PRECISION"),
               ("scorer", "TEXT"), ("cost_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0")],
    # One row per Saving or Cost record a lever made on a call (kind "saving" | "cost"): `usage --by lever`.
    "savings": [("ts", "DOUBLE PRECISION NOT NULL"), ("request_id", "TEXT NOT NULL"), ("tenant", "TEXT"),
                ("feature", "TEXT"), ("kind", "TEXT NOT NULL"), ("lever", "TEXT NOT NULL"),
                ("usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"), ("detail", "TEXT")],
}


def _rollups(cursor: Any, placeholder: str) -> None:
    """Migration 5: the hourly and daily roll-ups the dashboard reads (scrimp/ledger/aggregates.py), filled from
    the rows already there."""
    from scrimp.ledger import aggregates

    for sql in aggregates.create_statements(sqlite=placeholder == "?"):
        cursor.execute(sql)
    aggregates.backfill(cursor, placeholder)


MIGRATIONS: list[tuple[int, list[str | Callable[[Any, str], None]]]] = [
    (1, [
        "CREATE TABLE IF NOT EXISTS calls (" + ", ".join(f"{n} {t}" for n, t in COLUMNS_V1) + ")",
        "CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts)",
        "CREATE INDEX IF NOT EXISTS calls_tenant_feature ON calls (tenant, feature)",
        "CREATE INDEX IF NOT EXISTS calls_request ON calls (request_id)",
    ]),
    (2, [
        "CREATE TABLE IF NOT EXISTS events (" + ", ".join(f"{n} {t}" for n, t in TABLES["events"]) + ")",
        "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
        "CREATE TABLE IF NOT EXISTS shadow (" + ", ".join(f"{n} {t}" for n, t in TABLES["shadow"]) + ")",
        "CREATE INDEX IF NOT EXISTS shadow_route ON shadow (route, ts)",
    ]),
    (3, [
        "CREATE TABLE IF NOT EXISTS savings (" + ", ".join(f"{n} {t}" for n, t in TABLES["savings"]) + ")",
        "CREATE INDEX IF NOT EXISTS savings_ts ON savings (ts)",
        "CREATE INDEX IF NOT EXISTS savings_lever ON savings (lever, ts)",
    ]),
    (4, [
        "ALTER TABLE calls ADD COLUMN key_id TEXT",
        "CREATE INDEX IF NOT EXISTS calls_key ON calls (key_id, ts)",
    ]),
    (5, [_rollups]),  # the dashboard's roll-ups
]

