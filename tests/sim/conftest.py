from __future__ import annotations

import pytest

from scrimp.sim.config import SimConfig
from scrimp.sim.testing import run_simulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sim():
    """A simulator on an ephemeral port, shared by a test module; counters/caches reset per test."""
    clock = FakeClock()
    with run_simulator(SimConfig(), clock=clock) as (url, app):
        app.state.clock_for_tests = clock
        yield url, app


@pytest.fixture
def sim_url(sim):
    url, app = sim
    app.state.sim.reset()
    return url


@pytest.fixture
def sim_state(sim):
    return sim[1].state.sim


@pytest.fixture
def clock(sim):
    return sim[1].state.clock_for_tests
