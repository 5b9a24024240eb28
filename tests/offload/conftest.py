"""A simulator whose models answer the generated intent prompts with their label, a model trained on them once per
session, and gateways offloading that feature."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from offload_helpers import examples, gateway_config, sim_config, write

from scrimp.cli import main
from scrimp.gateway.app import create_app
from scrimp.sim.testing import run_simulator, serve_app

ROWS = examples()


@dataclass
class OGW:
    url: str
    app: Any
    sim: Any

    def stage(self, name: str = "offload"):
        return next(s for s in self.app.state.gateway.stages if s.name == name)

    def rows(self, sql: str) -> list[tuple]:
        store = self.app.state.gateway.ledger
        store.flush()
        return store.query(sql)

    def sim_calls(self) -> int:
        return self.sim.counters.snapshot()["totals"]["requests"]

    def flush_log(self) -> None:
        """Every call's request-log row and ledger row written (commands read the database)."""
        self.stage("request_log").flush()
        self.app.state.gateway.ledger.flush()


@pytest.fixture(scope="session")
def sim():
    with run_simulator(sim_config(ROWS)) as (url, app):
        yield url, app


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> str:
    """The intent model, trained by the CLI on the generated examples (target 95%: a small data set)."""
    tmp = tmp_path_factory.mktemp("offload")
    data = write(tmp / "intents.jsonl", ROWS)
    out = str(tmp / "intent-model")
    result = CliRunner().invoke(main, ["offload", "train", "--data", data, "--out", out,
                                       "--target-agreement", "0.95"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def make_gateway(sim, tmp_path):
    sim_url, sim_app = sim
    stack = []

    def make(features: dict[str, Any], log: bool = True) -> OGW:
        sim_app.state.sim.reset()
        stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{len(stack)}.db")}]
        if log:
            stages.append({"name": "request_log", "features": ["*"]})
        if features:
            stages.append({"name": "offload", "features": features})
        app = create_app(gateway_config(sim_url, stages))
        cm = serve_app(app)
        url = cm.__enter__()
        stack.append(cm)
        return OGW(url, app, sim_app.state.sim)

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
    sim_app.state.sim.config.workload = sim_config(ROWS).workload


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
