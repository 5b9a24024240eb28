"""OpenAI's flex service tier (`service_tier: "flex"` on a chat completion): billed at the Batch API price, slower
(`flex_extra_ms` added), and refused with a 429 "resource unavailable" for a share of calls (`flex_429_rate`), as
OpenAI does when it has no spare capacity. Draws are seeded like the other faults."""

from __future__ import annotations

import random
from typing import Any

from scrimp.sim.errors import SimError


def admit(state: Any, body: dict[str, Any]) -> float:
    """Extra delay (seconds) for a flex call, 0 for another tier; raises the 429 a busy flex tier answers."""
    if body.get("service_tier") != "flex":
        return 0.0
    state.counters.hit("chat.completions.flex")
    rng = state.extras.get("flex_rng")
    if rng is None:
        rng = state.extras["flex_rng"] = _Rng(state.config.seed)
    if rng.random() < state.config.flex_429_rate:
        raise SimError(429, "Resource unavailable: the flex tier has no capacity right now; retry later or use the "
                            "default tier.", code="resource_unavailable")
    return state.config.flex_extra_ms / 1000.0


def tier(body: dict[str, Any]) -> str:
    return "flex" if body.get("service_tier") == "flex" else "default"


class _Rng(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(f"flex:{seed}")
        self._seed = seed

    def reset(self) -> None:  # POST /sim/reset draws the same sequence again
        self.seed(f"flex:{self._seed}")
