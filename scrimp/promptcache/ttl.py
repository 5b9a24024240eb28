"""Choosing the 5-minute or 1-hour TTL from how often a prefix is actually re-used.

A 5m entry is refreshed by every read, so a re-use within 5 minutes is a read (0.1x input) and a longer gap is a
new write (1.25x). A 1h entry costs 2x to write and turns gaps of up to an hour into reads. The dearer write pays
only when enough observed gaps fall between 5 and 60 minutes.

State is kept per prefix key (tenant, feature, model and a hash of the stable prefix), at most `max_keys` of
them (default 10,000, each a last-seen time and up to `window` gaps: ~2 KB): beyond that the least recently
seen prefix is forgotten, and if it comes back it starts again from the 5m default until `min_samples` gaps
are seen. A prefix that keeps changing (a cache buster) therefore cannot grow the gateway's memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from scrimp.promptcache.profiles import CacheProfile

MAX_KEYS = 10_000


class TTLChooser:
    def __init__(self, clock: Callable[[], float] = time.time, min_samples: int = 3, window: int = 50,
                 max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.clock = clock
        self.min_samples = min_samples
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, tuple[float, deque[float]]] = OrderedDict()  # key -> (last, gaps), LRU order

    def __len__(self) -> int:
        """How many prefixes are remembered (never more than `max_keys`)."""
        return len(self._seen)

    def observe(self, key: str) -> None:
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            gaps: deque[float] = deque(maxlen=self.window)
            if len(self._seen) >= self.max_keys:
                self._seen.popitem(last=False)  # the least recently seen prefix
        else:
            gaps = seen[1]
            gaps.append(now - seen[0])
            self._seen.move_to_end(key)
        self._seen[key] = (now, gaps)

    def _gaps(self, key: str) -> deque[float] | tuple[()]:
        seen = self._seen.get(key)
        return seen[1] if seen is not None else ()

    def expected_cost(self, key: str, profile: CacheProfile) -> tuple[float, float]:
        """Cost of re-using this prefix over the observed gaps, in units of its uncached input price."""
        gaps = self._gaps(key)
        five = sum(profile.read if g <= 300 else profile.write_5m for g in gaps)
        hour = sum(profile.read if g <= 3600 else profile.write_1h for g in gaps)
        return five, hour

    def choose(self, key: str, profile: CacheProfile) -> str:
        if "1h" not in profile.ttls or len(self._gaps(key)) < self.min_samples:
            return "5m"
        five, hour = self.expected_cost(key, profile)
        return "1h" if hour < five else "5m"
