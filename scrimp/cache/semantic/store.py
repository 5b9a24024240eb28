"""Where semantic-cache entries live: SQLite by default, PostgreSQL when replicas share state.

An entry keeps its vector beside the answer, so an index can always be rebuilt from the table (the
in-memory index is a cache of this, never the record). Feedback ("this cached answer was wrong") is kept
as labelled pairs for `scrimp cache train`. Calls are synchronous; the stage runs them off the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Entry:
    id: int
    tenant: str
    namespace: str
    feature: str
    query: str
    response: bytes
    cost_usd: float
    created: float
    expires: float
    vector: np.ndarray


_COLUMNS = "id, tenant, namespace, feature, query, response, cost_usd, created, expires, vector"

_SCHEMA = [
    ("CREATE TABLE IF NOT EXISTS semantic_cache (id {serial}, tenant TEXT NOT NULL, namespace TEXT NOT NULL, "
    "feature TEXT NOT NULL, query TEXT NOT NULL, vector {blob} NOT NULL, response {blob} NOT NULL, "
    "cost_usd DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL, "
    "used DOUBLE PRECISION NOT NULL, hits INTEGER NOT NULL DEFAULT 0)"),
    "CREATE INDEX IF NOT EXISTS semantic_cache_ns ON semantic_cache (namespace, id)",
    "CREATE INDEX IF NOT EXISTS semantic_cache_used ON semantic_cache (used)",
    "CREATE INDEX IF NOT EXISTS semantic_cache_tenant ON semantic_cache (tenant, feature)",
    ("CREATE TABLE IF NOT EXISTS semantic_feedback (id {serial}, tenant TEXT NOT NULL, feature TEXT NOT NULL, "
    "text_a TEXT NOT NULL, text_b TEXT NOT NULL, label INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL)"),
]


class SemanticStore:
    """Base with the shared SQL; subclasses give a connection and their dialect."""

    ph = "?"
    shared = False  # True where other processes may write: the index then re-reads new rows on lookup
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._conn: Any = None

    def connect(self) -> Any:
        raise NotImplementedError

    def _db(self) -> Any:
        if self._conn is None:
            self._conn = self.connect()
            for sql in _SCHEMA:
                self._conn.execute(sql.format(serial=self.serial, blob=self.blob))
            self._conn.commit()
        return self._conn

    def _run(self, sql: str, params: tuple = (), *, fetch: bool = True, commit: bool = False) -> list[tuple]:
        with self._lock:
            db = self._db()
            cur = db.execute(sql.replace("?", self.ph), params)
            rows = cur.fetchall() if fetch and cur.description else []
            if commit:
                db.commit()
            return rows

    # -- entries ------------------------------------------------------------------------------------
    def insert(self, tenant: str, namespace: str, feature: str, query: str, vector: np.ndarray, response: bytes,
               cost_usd: float, ttl_s: float) -> int:
        now = time.time()
        rows = self._run("INSERT INTO semantic_cache (tenant, namespace, feature, query, vector, response, cost_usd, "
                         "created, expires, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                         (tenant, namespace, feature, query, np.asarray(vector, np.float32).tobytes(), response,
                          cost_usd, now, now + ttl_s, now), commit=True)
        return int(rows[0][0])

    def get(self, entry_id: int) -> Entry | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM semantic_cache WHERE id = ?", (entry_id,))
        if not rows:
            return None
        r = rows[0]
        return Entry(int(r[0]), r[1], r[2], r[3], r[4], bytes(r[5]), float(r[6]), float(r[7]), float(r[8]),
                     np.frombuffer(bytes(r[9]), dtype=np.float32))

    def touch(self, entry_id: int) -> None:
        self._run("UPDATE semantic_cache SET used = ?, hits = hits + 1 WHERE id = ?", (time.time(), entry_id),
                  fetch=False, commit=True)

    @staticmethod
    def _width(dim: int | None) -> tuple[str, tuple]:
        # vectors are float32 bytes: an entry made by an embedder of another dimension is left out
        return ("", ()) if dim is None else (" AND length(vector) = ?", (4 * int(dim),))

    def vectors(self, namespace: str, after_id: int = 0, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live entries of one namespace newer than `after_id`: (ids, vectors). With `dim`, only entries whose
        vectors have that many dimensions (the current embedder's)."""
        width, params = self._width(dim)
        rows = self._run("SELECT id, vector FROM semantic_cache WHERE namespace = ? AND id > ? AND expires > ?"
                         f"{width} ORDER BY id", (namespace, after_id, time.time(), *params))
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        vecs = (np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), -1)
                if rows else np.zeros((0, dim or 0), np.float32))
        return ids, vecs

    def ids(self, namespace: str, dim: int | None = None) -> np.ndarray:
        """Ids of one namespace's live entries (to reconcile a saved index with the table); with `dim`, only
        those whose vectors have that many dimensions."""
        width, params = self._width(dim)
        rows = self._run(f"SELECT id FROM semantic_cache WHERE namespace = ? AND expires > ?{width}",
                         (namespace, time.time(), *params))
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def delete(self, where: str, params: tuple) -> list[tuple[int, str]]:
        """Delete matching entries; returns their (id, namespace) so indexes can drop them too."""
        with self._lock:
            db = self._db()
            gone = db.execute(f"SELECT id, namespace FROM semantic_cache WHERE {where}".replace("?", self.ph),
                              params).fetchall()
            db.execute(f"DELETE FROM semantic_cache WHERE {where}".replace("?", self.ph), params)
            db.commit()
        return [(int(i), ns) for i, ns in gone]

    def delete_ids(self, ids: list[int]) -> list[tuple[int, str]]:
        if not ids:
            return []
        return self.delete(f"id IN ({', '.join('?' for _ in ids)})", tuple(ids))

    def expire_and_evict(self) -> list[tuple[int, str]]:
        """Drop expired entries, then the least recently used beyond `max_entries`."""
        gone = self.delete("expires <= ?", (time.time(),))
        count = self._run("SELECT COUNT(*) FROM semantic_cache")[0][0]
        excess = int(count) - self.max_entries
        if excess > 0:
            ids = [r[0] for r in self._run("SELECT id FROM semantic_cache ORDER BY used LIMIT ?", (excess,))]
            gone += self.delete_ids(ids)
        return gone

    def count(self, tenant: str | None = None) -> int:
        if tenant is None:
            return int(self._run("SELECT COUNT(*) FROM semantic_cache")[0][0])
        return int(self._run("SELECT COUNT(*) FROM semantic_cache WHERE tenant = ?", (tenant,))[0][0])

    # -- feedback -----------------------------------------------------------------------------------
    def add_feedback(self, tenant: str, feature: str, text_a: str, text_b: str, label: int) -> None:
        self._run("INSERT INTO semantic_feedback (tenant, feature, text_a, text_b, label, created) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (tenant, feature, text_a, text_b, label, time.time()),
                  fetch=False, commit=True)

    def feedback(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT tenant, feature, text_a, text_b, label FROM semantic_feedback ORDER BY id")
        return [{"tenant": r[0], "feature": r[1], "text_a": r[2], "text_b": r[3], "label": int(r[4])} for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SQLiteSemanticStore(SemanticStore):
    def __init__(self, path: str | Path, max_entries: int = 100_000) -> None:
        super().__init__(max_entries)
        self.path = str(path)

    def connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


class PostgresSemanticStore(SemanticStore):
    """Shared by replicas; `schema` isolates (tests use their own)."""

    ph = "%s"
    shared = True
    serial = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"

    def __init__(self, dsn: str, schema: str = "public", max_entries: int = 100_000) -> None:
        super().__init__(max_entries)
        self.dsn = dsn
        self.schema = schema

    def connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        conn.execute(f'SET search_path TO "{self.schema}"')
        conn.commit()
        return conn


def open_store(section: dict[str, Any]) -> SemanticStore:
    max_entries = int(section.get("max_entries", 100_000))
    if section.get("dsn"):
        return PostgresSemanticStore(section["dsn"], section.get("schema", "public"), max_entries)
    return SQLiteSemanticStore(section.get("path", "scrimp-semantic.db"), max_entries)
