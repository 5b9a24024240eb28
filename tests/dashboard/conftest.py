"""Ledger stores over SQLite and PostgreSQL (its own schema per test, dropped after). Point at another server
with SCRIMP_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test)."""

from __future__ import annotations

import os
import uuid

import pytest

from scrimp.ledger.store import PostgresLedger, SQLiteLedger

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """A function opening a ledger store on this test's database: open(rollups=True)."""
    if request.param == "sqlite":
        yield lambda rollups=True: SQLiteLedger(tmp_path / "ledger.db", rollups=rollups)
        return
    schema = f"scrimp_dash_{uuid.uuid4().hex[:10]}"
    yield lambda rollups=True: PostgresLedger(PG_DSN, schema, rollups=rollups)
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
