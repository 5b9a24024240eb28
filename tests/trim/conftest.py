"""A gateway with the trim stage in front of a simulator that records every request body it receives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.app import create_app as create_sim
from scrimp.sim.testing import serve_app


class Recorder:
    """ASGI middleware: keeps the JSON body of every POST the simulator gets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            self.bodies.append(json.loads(raw))
        except ValueError:
            pass
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


@dataclass
class TrimGateway:
    url: str
    app: Any
    sim: Recorder
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def upstream(self, model: str) -> list[dict[str, Any]]:
        """Bodies the simulator received for this model."""
        return [b for b in self.sim.bodies if b.get("model") == model]

    def rows(self, sql: str) -> list[tuple]:
        store = self.app.state.gateway.ledger
        store.flush()
        return store.query(sql)

    @property
    def stage(self):
        return next(s for s in self.app.state.gateway.stages if s.name == "trim")


def make_gateway(tmp_path, trim: dict[str, Any], prompt_cache: bool = True):
    sim = Recorder(create_sim())
    stages = [{"name": "ledger", "path": str(tmp_path / "ledger.db")}, {"name": "trim", **trim}]
    if prompt_cache:
        stages.append({"name": "prompt_cache"})
    return sim, stages


@pytest.fixture
def trim_gateway(tmp_path, request):
    trim, prompt_cache = getattr(request, "param", ({}, True))
    sim, stages = make_gateway(tmp_path, trim, prompt_cache)
    with serve_app(sim) as sim_url:
        app = create_app(simulated(sim_url, stages=stages))
        with serve_app(app) as url:
            yield TrimGateway(url, app, sim)
