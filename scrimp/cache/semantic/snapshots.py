"""HNSW indexes saved to disk, so a restart does not rebuild a large namespace's graph.

Building the graph is the slow part of a large cache (minutes at a million entries; bench/semcache_latency.py);
reading a saved one back takes seconds. A snapshot is a cache of the store, never the record: on load the
namespace's live ids are read from the table, entries added since the save are appended and entries deleted
or expired since are dropped, so a stale snapshot only costs the difference. Only HNSW indexes are saved;
exact ones are rebuilt from the table faster than a file could be read.

Files are written under a temporary name and renamed, so a crash leaves the previous snapshot or none; a file
that cannot be read, or holds vectors of another dimension than the embedder's (the embedder was changed),
is set aside with a warning and the index is rebuilt from the store."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from scrimp.cache.semantic.index import AutoIndex, HnswIndex

log = logging.getLogger("scrimp.cache.semantic")
FORMAT = 1


class IndexSnapshots:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _paths(self, namespace: str) -> tuple[Path, Path]:
        name = hashlib.sha256(namespace.encode()).hexdigest()[:32]  # namespaces are long; file names are not
        return self.directory / f"{name}.usearch", self.directory / f"{name}.json"

    def save(self, namespace: str, index: AutoIndex) -> bool:
        """Write `index` if it is an HNSW graph; the caller keeps it from changing meanwhile (holding its
        writes, or the cache's lock)."""
        hnsw = index.hnsw
        if hnsw is None:
            return False
        record = {"format": FORMAT, "namespace": namespace, "max_id": index.max_id, "count": len(index),
                  "dim": hnsw.dim}
        graph, meta = self._paths(namespace)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp_graph, tmp_meta = (p.with_name(f".{p.name}.tmp{os.getpid()}") for p in (graph, meta))
        try:
            hnsw.save(str(tmp_graph))
            tmp_meta.write_text(json.dumps(record))
            os.replace(tmp_graph, graph)
            os.replace(tmp_meta, meta)  # a crash between the two renames is caught by the count check on load
        finally:
            tmp_graph.unlink(missing_ok=True)
            tmp_meta.unlink(missing_ok=True)
        index.dirty = False
        return True

    def namespaces(self) -> list[str]:
        """Namespaces with a saved graph, most recently saved first."""
        records = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        out = []
        for path in records:
            try:
                out.append(json.loads(path.read_text())["namespace"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # load() sets a bad record aside when the namespace is asked for
        return out

    def load(self, namespace: str, store, hnsw_from: int, dim: int | None = None) -> AutoIndex | None:
        """The saved index of `namespace` brought up to date with `store`, or None when there is none (or
        when it was made for vectors of another dimension than `dim`, the embedder's)."""
        graph, meta_path = self._paths(namespace)
        if not graph.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT or meta.get("namespace") != namespace:
                raise ValueError("written for another namespace or by another version")
            hnsw = HnswIndex.load(str(graph))
            if len(hnsw) != meta["count"]:
                raise ValueError(f"holds {len(hnsw)} entries, its record says {meta['count']}")
            if dim is not None and hnsw.dim != dim:
                raise ValueError(f"holds {hnsw.dim}-dimension vectors, the embedder makes {dim}")
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("semantic cache: index snapshot %s unusable (%s); rebuilding it from the store", graph, exc)
            for p in (graph, meta_path):
                p.replace(p.with_name(p.name + ".bad"))
            return None
        index = AutoIndex(hnsw_from, hnsw=hnsw, max_id=int(meta["max_id"]))
        live, held = store.ids(namespace, dim), hnsw.keys()
        for entry_id in np.setdiff1d(held, live, assume_unique=True):
            index.remove(int(entry_id))  # deleted or expired since the snapshot
        missing = np.setdiff1d(live, held, assume_unique=True)
        if len(missing):  # added since (or, with a shared store, committed late by another replica)
            ids, vecs = store.vectors(namespace, int(missing.min()) - 1, dim)
            keep = np.isin(ids, missing)
            index.add(ids[keep], vecs[keep])
        return index
