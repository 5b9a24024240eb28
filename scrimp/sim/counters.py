"""What the simulator served, per model and endpoint: tests and benchmarks read it over HTTP."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


class Counters:
    FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_model: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(self.FIELDS, 0))
        self.by_endpoint: dict[str, int] = defaultdict(int)

    def hit(self, endpoint: str) -> None:
        self.by_endpoint[endpoint] += 1

    def record(self, model: str, *, input_tokens: int = 0, output_tokens: int = 0, cache_read: int = 0,
               cache_write: int = 0, error: bool = False) -> None:
        row = self.by_model[model]
        row["requests"] += 1
        row["errors"] += int(error)
        row["input_tokens"] += input_tokens
        row["output_tokens"] += output_tokens
        row["cache_read_tokens"] += cache_read
        row["cache_write_tokens"] += cache_write

    def snapshot(self) -> dict[str, Any]:
        totals = dict.fromkeys(self.FIELDS, 0)
        for row in self.by_model.values():
            for k in self.FIELDS:
                totals[k] += row[k]
        return {"totals": totals, "models": {k: dict(v) for k, v in self.by_model.items()},
                "endpoints": dict(self.by_endpoint)}
