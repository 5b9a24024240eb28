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
    """Draws faults from a seeded generator so a run with the same seed fails the same requests."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def reset(self) -> None:
        self._rng = random.Random(self.seed)

    def before_call(self, model: ModelConfig) -> float:
        """Raise an injected error, or return extra delay in seconds (0 for most calls)."""
        f = model.faults
        roll = self._rng.random()
        if roll < f.rate_429:
            raise SimError(429, "Rate limit reached (injected fault).", code="rate_limit_exceeded", retry_after=1)
        roll -= f.rate_429
        if roll < f.rate_500:
            raise SimError(500, "The server had an error while processing your request (injected fault).")
        roll -= f.rate_500
        if roll < f.rate_529:
            status = 529 if model.provider == "anthropic" else 503
            raise SimError(status, "Overloaded (injected fault).")
        if f.slow and self._rng.random() < f.slow:
            return f.slow_ms / 1000.0
        return 0.0

    def drop_stream(self, model: ModelConfig) -> bool:
        return bool(model.faults.drop_stream) and self._rng.random() < model.faults.drop_stream
