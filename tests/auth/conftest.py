"""Gateways with `auth:` over the simulator: keys in SQLite or PostgreSQL (the ledger's database), the exact cache
in SQLite or Redis, optionally the semantic cache or a router. Each PostgreSQL gateway has its own schema and
Redis prefix, dropped afterwards. Point at other servers with SCRIMP_TEST_PG_DSN / SCRIMP_TEST_REDIS_URL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from auth_helpers import ADMIN, PG_DSN, REDIS_URL

from scrimp.auth.options import AuthOptions
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.options import Where, parse_options
from scrimp.sim.testing import run_simulator, serve_app


@dataclass
class AGW:
    url: str
    app: Any
    sim: Any

    @property
    def gateway(self):
        return self.app.state.gateway

    @property
    def store(self):
        return self.gateway.auth.resolver.store

    def key(self, tenant: str, **binding: Any) -> str:
        """A new database key bound to `tenant`."""
        secret, _rec = self.store.create(tenant, **binding)
        return secret

    def stage(self, name: str):
        return next(s for s in self.gateway.stages if s.name == name)

    def rows(self, columns: str = "tenant, key_id, cache, status") -> list[tuple]:
        store = self.gateway.ledger
        store.flush()
        return store.query(f"SELECT {columns} FROM calls ORDER BY ts")

    def sim_calls(self) -> int:
        return self.sim.counters.snapshot()["totals"]["requests"]

    def openai(self, key: str, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def anthropic(self, key: str, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, **kw)


@pytest.fixture(scope="session")
def sim_upstream():
    with run_simulator() as (url, app):
        yield url, app


def pg_cleanup(schema: str, prefix: str) -> None:
    import psycopg
    import redis

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    r = redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*"))
    if keys:
        r.delete(*keys)


@pytest.fixture
def make_gateway(sim_upstream, tmp_path):
    """make_gateway(backend="sqlite"|"pg_redis", auth={...}, extra=[stage sections], ledger=None, config_hook=None,
    cleanup=None) -> AGW; `cleanup` runs after the gateways have stopped."""
    sim_url, sim_app = sim_upstream
    running: list[Any] = []
    cleanups: list[Any] = []

    def make(backend: str = "sqlite", auth: dict[str, Any] | None = None, extra: list[dict[str, Any]] = (),
             ledger: dict[str, Any] | None = None, config_hook: Any = None, cleanup: Any = None) -> AGW:
        sim_app.state.sim.reset()
        if cleanup is not None:
            cleanups.append(cleanup)  # run once every gateway has stopped
        suffix = uuid.uuid4().hex[:10]
        if backend == "sqlite":
            stages = [ledger or {"name": "ledger", "path": str(tmp_path / f"ledger-{suffix}.db")},
                      {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / f"cache-{suffix}.db")}]
        else:
            schema, prefix = f"scrimp_test_auth_{suffix}", f"scrimp-test-auth-{suffix}:"
            cleanups.append(lambda: pg_cleanup(schema, prefix))
            stages = [ledger or {"name": "ledger", "dsn": PG_DSN, "schema": schema},
                      {"name": "exact_cache", "backend": "redis", "url": REDIS_URL, "prefix": prefix}]
        config = simulated(sim_url, stages=stages + list(extra))
        config.auth = parse_options(AuthOptions, {"required": True, "admin_key": ADMIN, "key_cache_ttl_s": 0.2,
                                                  **(auth or {})}, Where(path="auth"))
        if config_hook is not None:
            config_hook(config)
        app = create_app(config)
        cm = serve_app(app)
        url = cm.__enter__()
        running.append(cm)
        return AGW(url, app, sim_app.state.sim)

    yield make
    for cm in reversed(running):
        cm.__exit__(None, None, None)
    for cleanup in cleanups:
        cleanup()


@pytest.fixture(params=["sqlite", "pg_redis"])
def agw(request, make_gateway) -> AGW:
    return make_gateway(request.param)
