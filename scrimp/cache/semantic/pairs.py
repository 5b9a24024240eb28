"""Labelled question pairs `{"text_a", "text_b", "label"}` (JSON lines, optionally gzipped): reading them
with clear errors, and splitting them so that no question is on both sides of a split."""

from __future__ import annotations

import gzip
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class PairsError(ValueError):
    pass


@dataclass
class Pairs:
    text_a: list[str]
    text_b: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> Pairs:
        idx = np.flatnonzero(mask)
        return Pairs([self.text_a[i] for i in idx], [self.text_b[i] for i in idx], self.labels[idx])

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(self.text_a + other.text_a, self.text_b + other.text_b,
                     np.concatenate([self.labels, other.labels]))


def read_pairs(path: str | Path) -> Pairs:
    path = Path(path)
    if not path.exists():
        raise PairsError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    a, b, y = [], [], []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ta, tb, label = row["text_a"], row["text_b"], int(row["label"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise PairsError(f"{path}:{n}: expected {{\"text_a\": str, \"text_b\": str, \"label\": 0|1}} "
                                 f"({exc.__class__.__name__}: {exc})") from exc
            if not isinstance(ta, str) or not isinstance(tb, str) or label not in (0, 1):
                raise PairsError(f"{path}:{n}: text_a and text_b must be strings and label 0 or 1")
            a.append(ta)
            b.append(tb)
            y.append(label)
    if not y:
        raise PairsError(f"{path}: no pairs")
    return Pairs(a, b, np.asarray(y, dtype=np.int64))


def group_split(pairs: Pairs, shares: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Masks for each share. Pairs sharing a question (directly or through others) stay together, so a
    model is never scored on a question it was trained on."""
    ids: dict[str, int] = {}
    parent: list[int] = []

    def node(text: str) -> int:
        if text not in ids:
            ids[text] = len(parent)
            parent.append(len(parent))
        return ids[text]

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ta, tb in zip(pairs.text_a, pairs.text_b):
        ra, rb = find(node(ta)), find(node(tb))
        parent[ra] = rb
    comp = np.asarray([find(ids[ta]) for ta in pairs.text_a])
    groups = np.unique(comp)
    rank = np.empty(len(groups))
    rank[np.random.default_rng(seed).permutation(len(groups))] = np.arange(len(groups)) / len(groups)
    group_rank = dict(zip(groups.tolist(), rank.tolist()))
    r = np.asarray([group_rank[c] for c in comp.tolist()])
    edges = np.cumsum((0.0, *shares))
    return [(r >= lo) & (r < hi) for lo, hi in itertools.pairwise(edges)]
