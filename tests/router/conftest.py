"""A simulator whose quality model makes the cheap model fail hard prompts, and gateways routing over it.

Workload: easy questions (difficulty 0.3: every model answers right) and hard ones (0.8: gpt-4o-mini,
capability 0.5, answers wrong; gpt-4o, 0.9, right). An extra "o4-mini" refuses max_tokens, temperature
and top_p, as OpenAI's reasoning models do."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from router_helpers import gateway_config, sim_config

from scrimp.gateway.app import create_app
from scrimp.sim.testing import run_simulator, serve_app


@dataclass
class RGW:
    url: str
    app: Any
    sim: Any

    @property
    def stage(self):
        return next(s for s in self.app.state.gateway.stages if s.name == "router")

    def ledger(self):
        store = self.app.state.gateway.ledger
        store.flush()
        return store

    def rows(self, table: str = "calls", columns: str = "*") -> list[tuple]:
        return self.ledger().query(f"SELECT {columns} FROM {table} ORDER BY ts")

    def sim_calls(self, model: str | None = None) -> int:
        snap = self.sim.counters.snapshot()
        if model is None:
            return snap["totals"]["requests"]
        return snap.get("models", {}).get(model, {}).get("requests", 0)

    def wait_shadow(self, n: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.rows("shadow", "score")) < n and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture(scope="session")
def sim():
    with run_simulator(sim_config()) as (url, app):
        yield url, app


@pytest.fixture
def make_gateway(sim, tmp_path):
    sim_url, sim_app = sim
    stack = []

    def make(routes: dict[str, Any], before: list[dict[str, Any]] = (), **model_overrides: dict[str, Any]) -> RGW:
        sim_app.state.sim.reset()
        stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{len(stack)}.db")}, *before,
                  {"name": "router", "routes": routes}]
        app = create_app(gateway_config(sim_url, stages, **model_overrides))
        cm = serve_app(app)
        url = cm.__enter__()
        stack.append(cm)
        return RGW(url, app, sim_app.state.sim)

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
    sim_app.state.sim.config.models["gpt-4o-mini"].capability = 0.5
