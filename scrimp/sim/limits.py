"""Per-model rate limits (requests and tokens per minute) and deterministic fault injection."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from scrimp.sim.config import ModelConfig
from scrimp.sim.errors import SimError


class RateLimiter:
    """A sliding one-minute window per model."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._events: dict[str, deque[tuple[float, int]]] = {}

    def check(self, model: ModelConfig, tokens: int) -> None:
        if not model.rpm and not model.tpm:
            return
        now = self.clock()
        window = self._events.setdefault(model.name, deque())
        while window and window[0][0] <= now - 60.0:
            window.popleft()
        used_tokens = sum(t for _, t in window)
        if (model.rpm and len(window) >= model.rpm) or (model.tpm and used_tokens + tokens > model.tpm):
            retry = 60.0 - (now - window[0][0]) if window else 1.0
            kind = "requests" if model.rpm and len(window) >= model.rpm else "tokens"
            raise SimError(429, f"Rate limit reached for {model.name}: {kind} per minute.",
                           code="rate_limit_exceeded", retry_after=retry)
        window.append((now, tokens))

    def reset(self) -> None:
        self._events.clear()


class FaultInjector:
    """Draws faults from a seeded generator so a run with the same seed fails the same requests.

    A test may also script the next calls to a model (`script`): each entry is an HTTP status the call fails
    with (429, 500, 503, 529), "drop" / "stall" (its stream is dropped / stalls halfway), "bad_json" (its JSON
    comes wrapped in prose), "bad_schema" (its schema answer does not fit the schema) or None (served normally).
    The configured rates apply once the script has run out."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._script: dict[str, deque[int | str | None]] = {}
        self._current: dict[str, int | str | None] = {}  # the scripted outcome of each model's latest call

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._script.clear()
        self._current.clear()

    def script(self, model: str, *outcomes: int | str | None) -> None:
        self._script.setdefault(model, deque()).extend(outcomes)

    def _scripted(self, model: ModelConfig, outcome: str) -> bool | None:
        """For a scripted call: whether `outcome` was scripted for it; None when the call was not scripted."""
        if model.name not in self._current:
            return None
        return self._current[model.name] == outcome

    def before_call(self, model: ModelConfig) -> float:
        """Raise an injected error, or return extra delay in seconds (0 for most calls)."""
        self._current.pop(model.name, None)
        queued = self._script.get(model.name)
        if queued:
            outcome = self._current[model.name] = queued.popleft()
            if isinstance(outcome, int):
                raise _failure(model, outcome)
            return 0.0
        f = model.faults
        roll = self._rng.random()
        if roll < f.rate_429:
            raise SimError(429, "Rate limit reached (injected fault).", code="rate_limit_exceeded", retry_after=1)
        roll -= f.rate_429
        if roll < f.rate_500:
            raise SimError(500, "The server had an error while processing your request (injected fault).")
        roll -= f.rate_500
        if roll < f.rate_529:
            raise _failure(model, 529)
        if f.slow and self._rng.random() < f.slow:
            return f.slow_ms / 1000.0
        return 0.0

    def drop_stream(self, model: ModelConfig) -> bool:
        scripted = self._scripted(model, "drop")
        if scripted is not None:
            return scripted
        return bool(model.faults.drop_stream) and self._rng.random() < model.faults.drop_stream

    def stall_stream(self, model: ModelConfig) -> float:
        """Seconds a stream goes silent halfway (0 for most streams)."""
        scripted = self._scripted(model, "stall")
        if scripted is None:
            scripted = bool(model.faults.stall_stream) and self._rng.random() < model.faults.stall_stream
        return model.faults.slow_ms / 1000.0 if scripted else 0.0

    def bad_json(self, model: ModelConfig) -> bool:
        scripted = self._scripted(model, "bad_json")
        if scripted is not None:
            return scripted
        return bool(model.faults.bad_json) and self._rng.random() < model.faults.bad_json

    def bad_schema(self, model: ModelConfig) -> bool:
        scripted = self._scripted(model, "bad_schema")
        if scripted is not None:
            return scripted
        return bool(model.faults.bad_schema) and self._rng.random() < model.faults.bad_schema


def _failure(model: ModelConfig, status: int) -> SimError:
    if status == 429:
        return SimError(429, "Rate limit reached (injected fault).", code="rate_limit_exceeded", retry_after=1)
    if status in (503, 529):
        return SimError(529 if model.provider == "anthropic" else 503, "Overloaded (injected fault).")
    return SimError(status, "The server had an error while processing your request (injected fault).")
