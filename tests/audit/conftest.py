"""A ledger (SQLite and PostgreSQL) holding a generated week of traffic with planted waste (traffic.py)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scrimp.ledger.store import PostgresLedger, SQLiteLedger
from tests.audit.traffic import generate

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def week(request, tmp_path_factory):
    """(ledger CLI args, what was generated)."""
    end = datetime.now(UTC) - timedelta(minutes=5)
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("audit") / "ledger.db"
        store = SQLiteLedger(path)
        made = generate(store, end)
        store.close()
        yield ["--db", str(path)], made
        return
    schema = "scrimp_test_" + uuid.uuid4().hex[:10]
    store = PostgresLedger(PG_DSN, schema)
    made = generate(store, end)
    store.close()
    yield ["--dsn", PG_DSN, "--schema", schema], made
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
