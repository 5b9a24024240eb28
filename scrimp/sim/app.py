"""The simulator's ASGI app: shared state plus the routes of each wire API."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp.sim.config import ModelConfig, SimConfig
from scrimp.sim.counters import Counters
from scrimp.sim.errors import SimError
from scrimp.sim.limits import FaultInjector, RateLimiter
from scrimp.sim.openai_prompt_cache import OpenAIPromptCache

# Modules that contribute routes, each exposing `routes() -> list[Route]`. Optional ones may be absent.
ROUTE_MODULES = ["scrimp.sim.openai_api", "scrimp.sim.openai_responses", "scrimp.sim.anthropic_api",
                 "scrimp.sim.batches"]


@dataclass
class SimState:
    config: SimConfig
    clock: Callable[[], float] = time.monotonic
    counters: Counters = field(default_factory=Counters)
    limiter: RateLimiter = field(init=False)
    faults: FaultInjector = field(init=False)
    openai_cache: OpenAIPromptCache = field(init=False)
    extras: dict[str, Any] = field(default_factory=dict)  # state owned by optional route modules

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.clock)
        self.faults = FaultInjector(self.config.seed)
        self.openai_cache = OpenAIPromptCache(self.config.openai_cache_idle_s, self.clock)

    def model(self, name: Any, *, kind: str = "chat") -> ModelConfig:
        if not isinstance(name, str) or not name:
            raise SimError(400, "you must provide a model parameter", param="model")
        model = self.config.model(name)
        if model is None or model.kind != kind:
            raise SimError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return model

    def record_error(self, model: Any) -> None:
        if isinstance(model, str) and model in self.config.models:
            self.counters.record(model, error=True)

    def reset(self) -> None:
        self.counters.reset()
        self.limiter.reset()
        self.faults.reset()
        self.openai_cache.reset()
        for value in self.extras.values():
            if hasattr(value, "reset"):
                value.reset()


def state_of(request: Request) -> SimState:
    return request.app.state.sim


async def read_json(request: Request, provider: str) -> dict[str, Any]:
    """The request body as a JSON object, or the API's own error for a bad or oversized body."""
    state = state_of(request)
    body = await request.body()
    if len(body) > state.config.max_body_bytes:
        raise SimError(413, f"Request body is too large ({len(body)} bytes; limit {state.config.max_body_bytes}).")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SimError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(data, dict):
        raise SimError(400, "The request body must be a JSON object.")
    return data


def check_key(request: Request, provider: str) -> None:
    if not state_of(request).config.require_api_key:
        return
    if provider == "anthropic":
        if not request.headers.get("x-api-key"):
            raise SimError(401, "x-api-key header is required")
    else:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise SimError(401, "You didn't provide an API key. Provide it in an Authorization header "
                                "(Authorization: Bearer YOUR_KEY).")


async def counters(request: Request) -> Response:
    return JSONResponse(state_of(request).counters.snapshot())


async def reset(request: Request) -> Response:
    state_of(request).reset()
    return JSONResponse({"reset": True})


def create_app(config: SimConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    state = SimState(config or SimConfig(), clock)
    routes: list[Route] = [Route("/sim/counters", counters), Route("/sim/reset", reset, methods=["POST"])]
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        routes.extend(module.routes())
    app = Starlette(routes=routes)
    app.state.sim = state
    return app
