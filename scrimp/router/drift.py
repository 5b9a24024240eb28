"""The drift guard: while a route sends traffic to the cheap model, keep estimating the cheap model's
quality (relative to the strong one) from shadow samples, and send the route back to the strong model when
that quality is below the route's target with confidence.

The estimate is the mean score of the latest `window` samples; "below with confidence" means its one-sided
upper confidence bound (mean + z * s / sqrt(n), z for `confidence`) is under the target, and at least
`min_samples` samples are in. Tripping is sticky: a route goes back to the cheap model when an operator
resets it (`reset()`, or restarting with a new router), not on its own."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist


@dataclass
class DriftStatus:
    samples: int
    mean: float | None
    upper: float | None
    target: float
    tripped: bool


class DriftGuard:
    def __init__(self, target: float = 0.95, confidence: float = 0.95, min_samples: int = 30,
                 window: int = 200) -> None:
        if not 0 < target <= 1 or not 0.5 <= confidence < 1:
            raise ValueError("drift: target must be in (0, 1] and confidence in [0.5, 1)")
        self.target = target
        self.confidence = confidence
        self.min_samples = min_samples
        self._z = NormalDist().inv_cdf(confidence)
        self._scores: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.tripped = False

    def add(self, score: float) -> bool:
        """Record one sample; True when this sample trips the guard."""
        with self._lock:
            self._scores.append(min(1.0, max(0.0, float(score))))
            if self.tripped or len(self._scores) < self.min_samples:
                return False
            status = self._status()
            if status.upper is not None and status.upper < self.target:
                self.tripped = True
                return True
            return False

    def _status(self) -> DriftStatus:
        n = len(self._scores)
        if n == 0:
            return DriftStatus(0, None, None, self.target, self.tripped)
        mean = sum(self._scores) / n
        var = sum((s - mean) ** 2 for s in self._scores) / max(n - 1, 1)
        # a floor on the spread: with few samples all alike, the bound must not claim certainty
        sd = max(math.sqrt(var), 0.5 / math.sqrt(n))
        return DriftStatus(n, mean, mean + self._z * sd / math.sqrt(n), self.target, self.tripped)

    def status(self) -> DriftStatus:
        with self._lock:
            return self._status()

    def reset(self) -> None:
        with self._lock:
            self._scores.clear()
            self.tripped = False
