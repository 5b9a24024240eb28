"""A simulator whose quality model makes the cheap model fail hard prompts, and gateways routing over it.

Workload: easy questions (difficulty 0.3: every model answers right) and hard ones (0.8: gpt-4o-mini,
capability 0.5, answers wrong; gpt-4o, 0.9, right). An extra "o4-mini" refuses max_tokens, temperature
and top_p, as OpenAI's reasoning models do."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import parse
from scrimp.sim.config import ModelConfig, SimConfig, normalise_prompt
from scrimp.sim.testing import run_simulator, serve_app

EASY = [f"What is {a} plus {b}?" for a, b in zip(range(1, 41), range(7, 47))]
HARD = [f"Prove that the sequence x_{n} = {n}^n / n! converges and find the limit of its ratio of terms."
        for n in range(2, 42)]


def answer_of(prompt: str) -> str:
    return "B" if prompt in HARD else str(sum(int(t.rstrip("?")) for t in prompt.split() if t.rstrip("?").isdigit()))


@dataclass
class RGW:
    url: str
    app: Any
    sim: Any

    @property
    def stage(self):
        return next(s for s in self.app.state.gateway.stages if s.name == "router")

    def ledger(self):
        store = self.app.state.gateway.ctx.shared["ledger"]
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


def sim_config() -> SimConfig:
    cfg = SimConfig()
    cfg.models["o4-mini"] = ModelConfig("o4-mini", "openai", "cheap", capability=0.6,
                                        rejects=["max_tokens", "temperature", "top_p"])
    cfg.models["claude-haiku-4-5"].rejects = ["temperature+top_p"]
    cfg.workload = {normalise_prompt(p): {"answer": answer_of(p), "difficulty": 0.8 if p in HARD else 0.3}
                    for p in EASY + HARD}
    return cfg


@pytest.fixture(scope="session")
def sim():
    with run_simulator(sim_config()) as (url, app):
        yield url, app


def gateway_config(sim_url: str, stages: list[dict[str, Any]], **model_overrides: dict[str, Any]):
    models = []
    for m in sim_config().models.values():
        if m.kind != "chat":
            continue
        base = sim_url + "/v1" if m.provider == "openai" else sim_url
        entry = {"name": m.name, "provider": m.provider, "base_url": base, "api_key": "sim", "tier": m.tier}
        entry.update(model_overrides.get(m.name, {}))
        models.append(entry)
    return parse({"models": models, "stages": stages})


@pytest.fixture
def make_gateway(sim, tmp_path):
    sim_url, sim_app = sim
    stack = []

    def make(routes: dict[str, Any], **model_overrides: dict[str, Any]) -> RGW:
        sim_app.state.sim.reset()
        stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{len(stack)}.db")},
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


def write_labelled(path, n_each: int = 40) -> str:
    """Labelled routing data in the documented format: the cheap model fails the hard prompts."""
    rows = [{"prompt": p, "scores": {"gpt-4o-mini": 1.0, "gpt-4o": 1.0}} for p in EASY[:n_each]]
    rows += [{"prompt": p, "scores": {"gpt-4o-mini": 0.0, "gpt-4o": 1.0}} for p in HARD[:n_each]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
