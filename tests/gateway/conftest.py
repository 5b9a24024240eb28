"""Gateway fixtures: a simulator upstream and gateways over each storage backend.

Backends: `sqlite` (embedded default) and `pg_redis` (ledger in PostgreSQL, exact cache in Redis). Each test
run uses its own PostgreSQL schema and Redis key prefix. Point at other servers with SCRIMP_TEST_PG_DSN
(default postgresql://postgres@127.0.0.1:5432/test) and SCRIMP_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class GW:
    url: str
    app: Any
    sim_url: str
    sim: Any  # simulator state: counters, caches

    @property
    def gateway(self):
        return self.app.state.gateway

    def rows(self) -> list[dict[str, Any]]:
        """Ledger rows, oldest first, after the writer has caught up."""
        store = self.gateway.ledger
        store.flush()
        from scrimp.ledger.schema import NAMES

        return [dict(zip(NAMES, r, strict=True)) for r in store.query(f"SELECT {', '.join(NAMES)} FROM calls ORDER BY ts")]

    def sim_calls(self) -> int:
        return self.sim.counters.snapshot()["totals"]["requests"]


@pytest.fixture(scope="module")
def sim_upstream():
    with run_simulator() as (url, app):
        yield url, app


def stages_for(backend: str, tmp_path, suffix: str) -> tuple[list[dict[str, Any]], Any]:
    if backend == "sqlite":
        return [{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / "cache.db")}], None
    schema = f"scrimp_test_{suffix}"
    prefix = f"scrimp-test-{suffix}:"

    def cleanup() -> None:
        import psycopg
        import redis

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        r = redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=prefix + "*"))
        if keys:
            r.delete(*keys)

    return [{"name": "ledger", "dsn": PG_DSN, "schema": schema},
            {"name": "exact_cache", "backend": "redis", "url": REDIS_URL, "prefix": prefix}], cleanup


@pytest.fixture(params=["sqlite", "pg_redis"])
def gw(request, sim_upstream, tmp_path):
    sim_url, sim_app = sim_upstream
    sim_app.state.sim.reset()
    stages, cleanup = stages_for(request.param, tmp_path, uuid.uuid4().hex[:10])
    app = create_app(simulated(sim_url, stages=stages))
    try:
        with serve_app(app) as url:
            yield GW(url, app, sim_url, sim_app.state.sim)
    finally:
        if cleanup:
            cleanup()
