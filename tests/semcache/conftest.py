"""Gateways with the semantic cache over each store: SQLite (embedded default) and PostgreSQL (shared by
replicas; each run in its own schema). Point at another PostgreSQL with SCRIMP_TEST_PG_DSN."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class SGW:
    url: str
    app: Any
    sim: Any
    stop: Any = None  # stop this gateway now (a graceful shutdown), e.g. to restart one on the same files

    @property
    def stage(self):
        return next(s for s in self.app.state.gateway.stages if s.name == "semantic_cache")

    def rows(self) -> list[dict[str, Any]]:
        from scrimp.ledger.schema import NAMES

        store = self.app.state.gateway.ledger
        store.flush()
        return [dict(zip(NAMES, r, strict=True)) for r in store.query(f"SELECT {', '.join(NAMES)} FROM calls ORDER BY ts")]

    def sim_calls(self) -> int:
        return self.sim.counters.snapshot()["totals"]["requests"]

    def entries(self) -> int:
        return self.stage.cache.store.count()

    def wait_writes(self) -> None:
        """Wait (bounded) until the entries of the answers given so far are written (or refused)."""
        deadline = time.monotonic() + 20
        while self.stage._pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not self.stage._pending, "semantic-cache writes still pending after 20 s"

    def wait_stored(self, n: int) -> None:
        """Entries are written after the answer goes out; wait (bounded) until `n` are there."""
        deadline = time.monotonic() + 20
        while self.entries() < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.entries() >= n, f"expected {n} semantic-cache entries, have {self.entries()}"


@pytest.fixture(scope="session")
def sim_upstream():
    with run_simulator() as (url, app):
        yield url, app


def semantic_section(backend: str, tmp_path, schema: str, **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"name": "semantic_cache", **extra}
    if backend == "sqlite":
        section["path"] = str(tmp_path / "semantic.db")
    else:
        section.update(dsn=PG_DSN, schema=schema)
    return section


@pytest.fixture
def make_gateway(sim_upstream, tmp_path, request):
    """make_gateway(backend, **semantic_options) -> SGW; cleaned up after the test."""
    sim_url, sim_app = sim_upstream
    stack = []
    schemas = []

    def make(backend: str = "sqlite", schema: str | None = None, **extra: Any) -> SGW:
        sim_app.state.sim.reset()
        schema = schema or f"scrimp_test_sem_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{schema}.db")},
                  {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / f"exact-{schema}.db")},
                  semantic_section(backend, tmp_path, schema, **extra)]
        app = create_app(simulated(sim_url, stages=stages))
        cm = serve_app(app)
        url = cm.__enter__()
        stack.append(cm)

        def stop() -> None:
            stack.remove(cm)
            cm.__exit__(None, None, None)

        return SGW(url, app, sim_app.state.sim, stop)

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def sgw(request, make_gateway) -> SGW:
    return make_gateway(request.param)
