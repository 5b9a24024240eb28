"""A gateway over the simulator with the request log on, over SQLite and PostgreSQL (own schema, dropped after)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def sim_url():
    with run_simulator() as (url, _app):
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_section(request, tmp_path):
    if request.param == "sqlite":
        yield {"name": "ledger", "path": str(tmp_path / "ledger.db")}
        return
    schema = "scrimp_test_" + uuid.uuid4().hex[:10]
    yield {"name": "ledger", "dsn": PG_DSN, "schema": schema}
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def gateway(sim_url: str, ledger: dict[str, Any], log: dict[str, Any], *more: dict[str, Any]):
    """A served gateway: ledger, request_log (section `log`), then `more` stages. Yields (url, app)."""
    app = create_app(simulated(sim_url, stages=[ledger, {"name": "request_log", **log}, *more]))
    with serve_app(app) as url:
        yield url, app


def log_stage(app):
    return next(s for s in app.state.gateway.stages if s.name == "request_log")
