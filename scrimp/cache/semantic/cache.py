"""The semantic cache proper: namespaces of entries, an index per namespace, lookup and insert.

A namespace is everything that must match exactly for a cached answer to be the right one (tenant,
model, system prompt, tools, response format, earlier turns, feature); only the final user question is
compared by meaning. Tenants are partitioned by construction: the namespace key starts with the tenant,
and each namespace has its own index, so a lookup never sees another tenant's vectors.

Synchronous: the stage runs these calls in a worker thread, off the event loop."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from scrimp.cache.semantic.index import AutoIndex
from scrimp.cache.semantic.model import SemanticModel
from scrimp.cache.semantic.snapshots import IndexSnapshots
from scrimp.cache.semantic.store import Entry, SemanticStore


@dataclass
class Hit:
    entry: Entry
    similarity: float  # cosine of the two questions
    score: float  # the decision score (verifier probability, or the cosine)


class SemanticCache:
    def __init__(self, store: SemanticStore, model: SemanticModel, *, hnsw_from: int = 10_000, candidates: int = 4,
                 max_namespaces: int = 10_000, sweep_every: int = 256,
                 snapshots: IndexSnapshots | None = None) -> None:
        self.store = store
        self.snapshots = snapshots
        self.model = model
        self.hnsw_from = hnsw_from
        self.candidates = candidates
        self.max_namespaces = max_namespaces
        self.sweep_every = sweep_every
        self._indexes: OrderedDict[str, AutoIndex] = OrderedDict()
        self._lock = threading.RLock()
        self._inserts = 0
        self._size: int | None = None  # entries in the store, kept without a COUNT(*) per insert

    def _index(self, namespace: str) -> AutoIndex:
        with self._lock:
            index = self._indexes.get(namespace)
            if index is None:
                dim = self.model.dim  # any dimension: the embedder's (entries of another one are left out)
                index = self.snapshots.load(namespace, self.store, self.hnsw_from, dim) if self.snapshots else None
                if index is None:
                    index = AutoIndex(self.hnsw_from, dim)
                    ids, vecs = self.store.vectors(namespace, dim=dim)
                    index.add(ids, vecs)
                self._indexes[namespace] = index
                if len(self._indexes) > self.max_namespaces:  # idle namespaces reload from the store when asked
                    idle_ns, idle = self._indexes.popitem(last=False)
                    if self.snapshots and idle.dirty and not idle.saving:
                        self.snapshots.save(idle_ns, idle)
            else:
                self._indexes.move_to_end(namespace)
                if self.store.shared:  # other replicas may have added entries
                    ids, vecs = self.store.vectors(namespace, index.max_id, index.dim)
                    index.add(ids, vecs)
            return index

    def lookup(self, namespace: str, query: str, vector: np.ndarray | None = None,
               threshold: float | None = None) -> tuple[Hit | None, np.ndarray]:
        """The best verified entry for `query` in `namespace`, or None; also returns the query's vector."""
        if vector is None:
            vector = self.model.embed([query])[0]
        index = self._index(namespace)
        with self._lock:
            ids, sims = index.search(vector, self.candidates)
        best: Hit | None = None
        now = time.time()
        for entry_id, sim in zip(ids, sims):
            if sim < self.model.floor:
                break  # sorted: the rest are further away
            entry = self.store.get(int(entry_id))
            if entry is None or entry.expires <= now or entry.namespace != namespace:
                with self._lock:
                    index.remove(int(entry_id))  # deleted or expired elsewhere
                continue
            score = float(self.model.scores([entry.query], [query], entry.vector[None, :], vector[None, :])[0])
            if self.model.accepts(np.asarray([sim]), np.asarray([score]), threshold)[0] and (best is None or score > best.score):
                best = Hit(entry, float(sim), score)
        if best is not None:
            self.store.touch(best.entry.id)
        return best, vector

    def insert(self, tenant: str, namespace: str, feature: str, query: str, vector: np.ndarray, response: bytes,
               cost_usd: float, ttl_s: float) -> int:
        entry_id = self.store.insert(tenant, namespace, feature, query, vector, response, cost_usd, ttl_s)
        with self._lock:
            index = self._indexes.get(namespace)
            if index is not None:
                index.add(np.asarray([entry_id], np.int64), np.asarray(vector, np.float32)[None, :])
            self._inserts += 1
            if self._size is None:
                self._size = self.store.count()
            else:
                self._size += 1
            sweep = self._inserts % self.sweep_every == 0 or self._size > self.store.max_entries
        if sweep:
            self.sweep()
        return entry_id

    def preload(self, stop: threading.Event | None = None) -> int:
        """Read the saved graphs back now (most recent first, up to `max_namespaces`) rather than on each
        namespace's first lookup, which would wait for it (seconds for a million entries). `stop` ends it
        between two graphs (a gateway stopping does not wait for the rest)."""
        if self.snapshots is None or not self.snapshots.directory.exists():
            return 0
        loaded = 0
        for namespace in self.snapshots.namespaces()[:self.max_namespaces]:
            if stop is not None and stop.is_set():
                break
            self._index(namespace)
            loaded += 1
        return loaded

    @property
    def size(self) -> int | None:
        """Entries in the store as last counted (None before the first write or sweep)."""
        return self._size

    def save_indexes(self) -> int:
        """Save the HNSW indexes changed since their last save (see snapshots.py); returns how many."""
        if self.snapshots is None:
            return 0
        with self._lock:
            changed = [(ns, index) for ns, index in self._indexes.items() if index.dirty and index.hnsw is not None]
        saved = 0
        for namespace, index in changed:
            # writing a large graph takes seconds (5 s at a million entries): lookups go on meanwhile, and the
            # namespace's writes wait for the end of the save instead of blocking them
            with self._lock:
                index.hold_writes()
            try:
                saved += self.snapshots.save(namespace, index)
            finally:
                with self._lock:
                    index.release_writes()
        return saved

    def sweep(self) -> int:
        """Expire and evict in the store, and drop those entries from the loaded indexes."""
        gone = self._forget(self.store.expire_and_evict())
        self._size = self.store.count()
        return gone

    def _forget(self, gone: list[tuple[int, str]]) -> int:
        with self._lock:
            for entry_id, namespace in gone:
                index = self._indexes.get(namespace)
                if index is not None:
                    index.remove(entry_id)
        return len(gone)

    def invalidate(self, *, tenant: str, feature: str | None = None, entry_id: int | None = None) -> int:
        where, params = "tenant = ?", [tenant]
        if feature is not None:
            where += " AND feature = ?"
            params.append(feature)
        if entry_id is not None:
            where += " AND id = ?"
            params.append(entry_id)
        return self._forget(self.store.delete(where, tuple(params)))

    def feedback_wrong(self, tenant: str, entry_id: int, asked: str | None) -> bool:
        """A client says this cached answer was wrong for its question: drop it, keep the pair as a label."""
        entry = self.store.get(entry_id)
        if entry is None or entry.tenant != tenant:
            return False
        if asked:
            self.store.add_feedback(tenant, entry.feature, entry.query, asked, 0)
        self.invalidate(tenant=tenant, entry_id=entry_id)
        return True
