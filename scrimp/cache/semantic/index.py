"""Nearest-neighbour search over one namespace's vectors (unit rows, so dot product = cosine).

Exact search is a matrix-vector product: exact, no build cost, and fastest while a namespace is small.
Past `hnsw_from` entries (chosen by bench/semcache_latency.py) an HNSW graph (usearch) answers in
logarithmic time. `AutoIndex` starts exact and moves to HNSW when the namespace grows past that size.

Any dimension: an index takes the width of the embedder's vectors (given, or from the first ones added) and
refuses vectors of another width with a ValueError naming both."""

from __future__ import annotations

import numpy as np


def _check_width(dim: int, vecs: np.ndarray, what: str) -> None:
    width = vecs.shape[-1] if vecs.ndim else 0
    if width != dim:
        raise ValueError(f"{what} has {width} dimensions; this index holds {dim}-dimension vectors")


class ExactIndex:
    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim  # None until the first vectors are added
        self._vecs = np.zeros((0, dim or 0), np.float32)
        self._ids = np.zeros(0, np.int64)
        self._n = 0
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._n

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vecs = np.asarray(vecs, np.float32)
        if self.dim is None:
            self.dim = int(vecs.shape[-1])
            self._vecs = np.zeros((0, self.dim), np.float32)
        _check_width(self.dim, vecs, "a vector added")
        need = self._n + len(ids)
        if need > len(self._vecs):  # grow geometrically: amortised O(1) appends
            cap = max(need, 2 * len(self._vecs), 64)
            self._vecs = np.resize(self._vecs, (cap, self.dim))
            self._ids = np.resize(self._ids, cap)
        self._vecs[self._n:need] = vecs
        self._ids[self._n:need] = ids
        for i, entry_id in enumerate(ids, start=self._n):
            self._row[int(entry_id)] = i
        self._n = need

    def remove(self, entry_id: int) -> bool:
        row = self._row.pop(int(entry_id), None)
        if row is None:
            return False
        last = self._n - 1
        if row != last:  # move the last row into the hole
            self._vecs[row] = self._vecs[last]
            self._ids[row] = self._ids[last]
            self._row[int(self._ids[row])] = row
        self._n = last
        return True

    def search(self, vec: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self._n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        _check_width(self.dim, np.asarray(vec), "the query vector")
        sims = self._vecs[:self._n] @ vec
        k = min(k, self._n)
        top = np.argpartition(-sims, k - 1)[:k] if k < self._n else np.arange(self._n)
        top = top[np.argsort(-sims[top])]
        return self._ids[top].copy(), sims[top]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ids[:self._n].copy(), self._vecs[:self._n].copy()


class HnswIndex:
    EXPANSION_SEARCH = 64

    def __init__(self, dim: int | None = None, connectivity: int = 16, expansion_add: int = 128,
                 expansion_search: int = EXPANSION_SEARCH) -> None:
        self.dim = dim
        self._options = {"connectivity": connectivity, "expansion_add": expansion_add,
                         "expansion_search": expansion_search}
        self._index = self._make(dim) if dim is not None else None  # made with the first vectors' width

    def _make(self, dim: int):
        from usearch.index import Index

        return Index(ndim=dim, metric="ip", dtype="f32", **self._options)

    def save(self, path: str) -> None:
        if self._index is None:
            raise ValueError("an empty index of unknown dimension cannot be saved")
        self._index.save(path)

    @classmethod
    def load(cls, path: str) -> HnswIndex:
        """A graph saved by `save` (raises ValueError for a file that is not one)."""
        from usearch.index import Index, MetricKind

        index = Index.restore(path)
        if index is None or index.metric != MetricKind.IP:
            raise ValueError(f"{path}: not a saved inner-product index")
        index.expansion_search = cls.EXPANSION_SEARCH  # a search setting, not saved in the file
        self = cls.__new__(cls)
        self.dim, self._index = int(index.ndim), index
        return self

    def keys(self) -> np.ndarray:
        if self._index is None:
            return np.zeros(0, np.int64)
        return np.asarray(self._index.keys, dtype=np.int64)

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            vecs = np.asarray(vecs, np.float32)
            if self._index is None:
                self.dim = int(vecs.shape[-1])
                self._index = self._make(self.dim)
            _check_width(self.dim, vecs, "a vector added")
            self._index.add(np.asarray(ids, np.uint64), np.ascontiguousarray(vecs, np.float32))

    def remove(self, entry_id: int) -> bool:
        if self._index is None or int(entry_id) not in self._index:
            return False
        self._index.remove(int(entry_id))
        return True

    def search(self, vec: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        _check_width(self.dim, np.asarray(vec), "the query vector")
        m = self._index.search(np.asarray(vec, np.float32), k)
        ids = np.asarray(m.keys, np.int64).reshape(-1)
        sims = (1.0 - np.asarray(m.distances, np.float32)).reshape(-1)  # usearch "ip" distance = 1 - dot
        return ids, sims


class AutoIndex:
    """Exact while small, HNSW once the namespace passes `hnsw_from` entries."""

    def __init__(self, hnsw_from: int = 10_000, dim: int | None = None, hnsw: HnswIndex | None = None,
                 max_id: int = 0) -> None:
        self.hnsw_from = hnsw_from
        self._impl: ExactIndex | HnswIndex = hnsw if hnsw is not None else ExactIndex(dim)
        self.max_id = max_id  # newest entry loaded (shared stores re-read rows past it)
        self.dirty = False  # changed since it was loaded or saved (snapshots.py)
        self._held: list[tuple] | None = None  # writes waiting while the graph is being saved

    @property
    def dim(self) -> int | None:
        """The width of the vectors held (None for an empty index not told it)."""
        return self._impl.dim

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._impl, HnswIndex) else "exact"

    def __len__(self) -> int:
        return len(self._impl)

    @property
    def hnsw(self) -> HnswIndex | None:
        return self._impl if isinstance(self._impl, HnswIndex) else None

    def hold_writes(self) -> None:
        """Until `release_writes`, adds and removes wait, so the graph can be saved while searches go on."""
        self._held = []

    @property
    def saving(self) -> bool:
        return self._held is not None

    def release_writes(self) -> None:
        held, self._held = self._held or [], None
        for op in held:
            if len(op) == 2:
                self.add(*op)
            else:
                self.remove(*op)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.dim is not None:  # refused now, not when held writes are released
            _check_width(self.dim, np.asarray(vecs), "a vector added")
        self.max_id = max(self.max_id, int(np.max(ids)))  # even when held: a shared store is not re-read twice
        if self._held is not None:
            self._held.append((ids, vecs))
            return
        self.dirty = True
        self._impl.add(ids, vecs)
        if isinstance(self._impl, ExactIndex) and len(self._impl) >= self.hnsw_from:
            old_ids, old_vecs = self._impl.items()
            self._impl = HnswIndex(self._impl.dim)
            self._impl.add(old_ids, old_vecs)

    def remove(self, entry_id: int) -> None:
        if self._held is not None:
            self._held.append((entry_id,))
        elif self._impl.remove(entry_id):
            self.dirty = True

    def search(self, vec: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return self._impl.search(vec, k)
