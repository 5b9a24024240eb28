"""Shadow checks of offloaded answers: a sampled share of the calls answered locally is also sent to the LLM, whose
answer tells whether the local one agreed. The spend is the call's own (`call.spend`, lever `offload`), and a daily
cap bounds it: before each check its worst case (the request's input and the longest answer the model gives for
this feature) is reserved, so concurrent checks cannot overshoot the cap together; the real cost replaces it after.

The check runs before the local answer is returned (its cost must be on the call's ledger row), so a shadowed call
takes as long as the LLM would have; the other calls are answered at once."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

from scrimp.options import Where


@dataclasses.dataclass
class ShadowOptions:
    share: float = 0.05  # of the offloaded calls
    max_usd_per_day: float = 1.0
    seed: int | None = None  # fixes the sampling sequence (tests, reproducible experiments)

    def check(self, where: Where) -> None:
        if not 0 <= self.share <= 1:
            raise where.key("share").error(f"must be between 0 and 1, got {self.share}")
        if self.max_usd_per_day < 0:
            raise where.key("max_usd_per_day").error("must not be negative")


class ShadowBudget:
    """Which offloaded calls to check, and the day's spend against the cap (UTC days)."""

    def __init__(self, options: ShadowOptions, clock=time.time) -> None:
        self.options = options
        self.clock = clock
        self._rng = random.Random(options.seed)
        self._lock = threading.Lock()
        self._day = ""
        self.spent_today = 0.0
        self.reserved = 0.0
        self.runs = 0
        self.skipped_for_cap = 0

    def _roll(self) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        if day != self._day:
            self._day, self.spent_today = day, 0.0

    def take(self, worst_usd: float) -> bool:
        """Whether to check this call; if so `worst_usd` is reserved until `settle`."""
        with self._lock:
            if self.options.share <= 0 or self._rng.random() >= self.options.share:
                return False
            self._roll()
            if self.spent_today + self.reserved + worst_usd > self.options.max_usd_per_day:
                self.skipped_for_cap += 1
                return False
            self.reserved += worst_usd
            return True

    def settle(self, worst_usd: float, spent_usd: float) -> None:
        with self._lock:
            self._roll()
            self.reserved = max(0.0, self.reserved - worst_usd)
            self.spent_today += spent_usd
            self.runs += 1
