"""Choosing the 5-minute or 1-hour TTL from how often a prefix is actually re-used.

A 5m entry is refreshed by every read, so a re-use within 5 minutes is a read (0.1x input) and a longer gap is a
new write (1.25x). A 1h entry costs 2x to write and turns gaps of up to an hour into reads. The dearer write pays
only when enough observed gaps fall between 5 and 60 minutes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from scrimp.promptcache.profiles import CacheProfile


class TTLChooser:
    def __init__(self, clock: Callable[[], float] = time.time, min_samples: int = 3, window: int = 50) -> None:
        self.clock = clock
        self.min_samples = min_samples
        self.window = window
        self._last: dict[str, float] = {}
        self._gaps: dict[str, deque[float]] = {}

    def observe(self, key: str) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None:
            self._gaps.setdefault(key, deque(maxlen=self.window)).append(now - last)
        self._last[key] = now

    def expected_cost(self, key: str, profile: CacheProfile) -> tuple[float, float]:
        """Cost of re-using this prefix over the observed gaps, in units of its uncached input price."""
        gaps = self._gaps.get(key, ())
        five = sum(profile.read if g <= 300 else profile.write_5m for g in gaps)
        hour = sum(profile.read if g <= 3600 else profile.write_1h for g in gaps)
        return five, hour

    def choose(self, key: str, profile: CacheProfile) -> str:
        if "1h" not in profile.ttls or len(self._gaps.get(key, ())) < self.min_samples:
            return "5m"
        five, hour = self.expected_cost(key, profile)
        return "1h" if hour < five else "5m"
