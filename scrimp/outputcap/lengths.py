"""What the output_cap stage learns: the lengths of each feature's complete answers, kept in a table beside
the ledger (`outputcap_answers`), so a restarted gateway and every replica on the same database learn from
all of them. Without a ledger database the lengths are kept in memory."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable

from scrimp.db import Database

DDL = (("CREATE TABLE IF NOT EXISTS outputcap_answers (feature TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, "
        "tokens BIGINT NOT NULL)"),
       "CREATE INDEX IF NOT EXISTS outputcap_answers_feature ON outputcap_answers (feature, ts)")


def quantile(values: list[int], q: float) -> int:
    """The q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class AnswerLengths:
    """Complete answers' output tokens per feature: `add` queues one, `sync` writes the queue and returns each
    asked feature's latest `window` lengths (this replica's and every other's)."""

    def __init__(self, db: Database | None) -> None:
        self.db = db
        self._pending: list[tuple[str, float, int]] = []
        self._lock = threading.Lock()
        self._memory: dict[str, deque[int]] = {}

    def add(self, feature: str, ts: float, tokens: int) -> None:
        with self._lock:
            self._pending.append((feature, ts, tokens))

    def sync(self, windows: dict[str, int]) -> dict[str, list[int]]:
        """Blocking (run it in a worker thread): flush, prune beyond each window, read back."""
        with self._lock:
            pending, self._pending = self._pending, []
        if self.db is None:
            for feature, _ts, tokens in pending:
                self._memory.setdefault(feature, deque(maxlen=100_000)).append(tokens)
            return {f: list(self._memory.get(f, ()))[-w:] for f, w in windows.items()}
        for i in range(0, len(pending), 200):  # one statement (and commit) per 200 answers
            chunk = pending[i:i + 200]
            self.db.execute("INSERT INTO outputcap_answers (feature, ts, tokens) VALUES "
                            + ", ".join(["(?, ?, ?)"] * len(chunk)), [v for row in chunk for v in row])
        out = {}
        for feature, window in windows.items():
            rows = self.db.execute("SELECT tokens, ts FROM outputcap_answers WHERE feature = ? ORDER BY ts DESC "
                                   "LIMIT ?", (feature, window), fetch="all")
            out[feature] = [int(r[0]) for r in rows]
            if len(rows) == window:  # older answers no longer count: keep the table small
                self.db.execute("DELETE FROM outputcap_answers WHERE feature = ? AND ts < ?", (feature, rows[-1][1]))
        return out

    def features(self) -> Iterable[str]:
        if self.db is None:
            return list(self._memory)
        return [r[0] for r in self.db.execute("SELECT DISTINCT feature FROM outputcap_answers", fetch="all")]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
