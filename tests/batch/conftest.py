"""Batch lane fixtures: a simulator whose batches end quickly, and gateways with the lane over SQLite or
PostgreSQL (own schema per test)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.ledger.schema import NAMES
from scrimp.sim.config import SimConfig
from scrimp.sim.testing import run_simulator, serve_app

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
FAST = {"max_wait_s": 0.3, "poll_s": 0.1, "tick_s": 0.05, "lease_s": 2.0, "record_grace_s": 0.5}


@dataclass
class Lane:
    url: str
    app: Any
    sim: Any

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    @property
    def stage(self) -> Any:
        return next(s for s in self.gateway.stages if s.name == "batch")

    def rows(self, where: str = "1 = 1") -> list[dict[str, Any]]:
        store = self.gateway.ledger
        store.flush()
        return [dict(zip(NAMES, r, strict=True))
                for r in store.query(f"SELECT {', '.join(NAMES)} FROM calls WHERE {where} ORDER BY ts")]

    def savings(self) -> list[tuple[str, str, float]]:
        self.gateway.ledger.flush()
        return self.gateway.ledger.query("SELECT request_id, lever, usd FROM savings ORDER BY ts")

    def endpoint_hits(self, name: str) -> int:
        return self.sim.counters.snapshot()["endpoints"].get(name, 0)


@pytest.fixture
def lane_settings() -> tuple[dict[str, Any], str]:
    """(the lane's fast test options, the PostgreSQL DSN)."""
    return dict(FAST), PG_DSN


@pytest.fixture(scope="module")
def sim():
    with run_simulator(SimConfig(batch_delay_s=0.2)) as (url, app):
        yield url, app


def lane_stages(backend: str, tmp_path: Any, batch: dict[str, Any] | None = None,
                extra: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], Any]:
    section = {"name": "batch", **FAST, **(batch or {})}
    if backend == "sqlite":
        ledger = {"name": "ledger", "path": str(tmp_path / "ledger.db")}
        cache = {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / "cache.db")}
        return [ledger, cache, *(extra or []), section], None
    schema = "scrimp_batch_" + uuid.uuid4().hex[:10]

    def cleanup() -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    ledger = {"name": "ledger", "dsn": PG_DSN, "schema": schema}
    cache = {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / "cache.db")}
    return [ledger, cache, *(extra or []), section], cleanup


@pytest.fixture
def make_lane(sim, tmp_path):
    """make_lane(backend="sqlite", batch={...}) -> a running gateway with the batch lane."""
    sim_url, sim_app = sim
    opened: list[Any] = []

    def make(backend: str = "sqlite", batch: dict[str, Any] | None = None,
             extra: list[dict[str, Any]] | None = None) -> Lane:
        sim_app.state.sim.reset()
        stages, cleanup = lane_stages(backend, tmp_path, batch, extra)
        app = create_app(simulated(sim_url, stages=stages))
        ctx = serve_app(app)
        url = ctx.__enter__()
        opened.append((ctx, cleanup))
        return Lane(url, app, sim_app.state.sim)

    yield make
    for ctx, cleanup in reversed(opened):
        ctx.__exit__(None, None, None)
        if cleanup:
            cleanup()
