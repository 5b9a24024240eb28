"""Ledger stores. Rows are queued and written by a background thread in batches, so recording a call
never slows or fails the request; `close()` drains the queue, so a graceful stop loses nothing."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scrimp.ledger import aggregates
from scrimp.ledger.counters import LedgerCounters
from scrimp.ledger.schema import MIGRATIONS, TABLES

log = logging.getLogger("scrimp.ledger")
_STOP = object()


class LedgerStore:
    """Base: a write queue drained by one thread. Subclasses open a connection and know their SQL dialect."""

    placeholder = "?"
    batch_size = 2000  # rows per commit at most
    batch_window_s = 0.25  # gather rows this long before a commit: one commit per batch, not per call

    def __init__(self, rollups: bool = True) -> None:
        self.rollups = rollups  # fold each batch into the dashboard's roll-ups, in the same transaction
        self.counters = LedgerCounters()  # spend and savings for /metrics, from committed rows
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failed_rows = 0
        self._ready = threading.Event()
        self._wake = threading.Event()  # set by flush() and close(): write what is queued now
        self._lock = threading.Lock()

    # -- subclass hooks --------------------------------------------------------------------------
    def connect(self) -> Any:
        raise NotImplementedError

    def migrate(self, conn: Any) -> None:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS scrimp_migrations (version INTEGER PRIMARY KEY)")
        cur.execute("SELECT version FROM scrimp_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for sql in statements:
                if callable(sql):
                    sql(cur, self.placeholder)
                else:
                    cur.execute(sql)
            cur.execute(f"INSERT INTO scrimp_migrations (version) VALUES ({self.placeholder})", (version,))
        conn.commit()

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            conn = self.connect()  # fail fast at start-up on a bad path or DSN
            self.migrate(conn)
            self._thread = threading.Thread(target=self._run, args=(conn,), name="scrimp-ledger", daemon=True)
            self._thread.start()

    def write(self, row: dict[str, Any], table: str = "calls") -> None:
        """Queue a row (for `calls`, `events` or `shadow`); returns at once."""
        if table not in TABLES:
            raise ValueError(f"no ledger table {table!r}")
        if self._thread is None:
            self.start()
        self._queue.put((table, row))

    def insert_now(self, cursor: Any, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Rows a stage writes in a transaction of its own on this database (the batch lane marks a line recorded
        and writes its row in one commit, so the line is billed exactly once): inserted and folded into the
        roll-ups as the writer does. Call `committed(rows)` once that transaction is committed."""
        for table, row in rows:
            cols = TABLES[table]
            cursor.execute(f"INSERT INTO {table} ({', '.join(n for n, _ in cols)}) "
                           f"VALUES ({', '.join([self.placeholder] * len(cols))})", tuple(row.get(n) for n, _ in cols))
        if self.rollups:
            folded = aggregates.Batch()
            for table, row in rows:
                folded.add(table, row)
            folded.write(cursor, self.placeholder)

    def committed(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """The /metrics counters, for rows `insert_now` wrote in a transaction now committed."""
        self.counters.add(rows)

    def flush(self) -> None:
        """Block until every queued row is written."""
        if self._thread is not None:
            done = threading.Event()
            self._queue.put(done)
            self._wake.set()
            done.wait(timeout=30)

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout=30)
        self._thread = None

    def _run(self, conn: Any) -> None:
        sql = {table: f"INSERT INTO {table} ({', '.join(n for n, _ in cols)}) "
                      f"VALUES ({', '.join([self.placeholder] * len(cols))})" for table, cols in TABLES.items()}
        stop = False
        while not stop:
            items = [self._queue.get()]
            if items[0] is not _STOP and not isinstance(items[0], threading.Event) \
                    and self._queue.qsize() < self.batch_size:
                # Gather for a window, woken early only by flush() / close(): not by each row queued, whose
                # wake-ups (and GIL hand-overs) cost more CPU than the inserts. Commits are the writer's main cost,
                # so fewer, larger batches are what keep the writer cheap (bench/gateway_overhead.py).
                self._wake.wait(self.batch_window_s)
                self._wake.clear()
            while len(items) < self.batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch: dict[str, list[tuple]] = {}
            written: list[tuple[str, dict[str, Any]]] = []
            waiters = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    table, row = item
                    batch.setdefault(table, []).append(tuple(row.get(n) for n, _ in TABLES[table]))
                    written.append(item)
            if batch:
                try:
                    cur = conn.cursor()
                    for table, rows in batch.items():
                        cur.executemany(sql[table], rows)
                    if self.rollups:
                        folded = aggregates.Batch()
                        for table, row in written:
                            folded.add(table, row)
                        folded.write(cur, self.placeholder)
                    conn.commit()
                    self.counters.add(written)
                except Exception:
                    self.failed_rows += sum(map(len, batch.values()))
                    log.exception("ledger write failed; %d rows dropped", sum(map(len, batch.values())))
                    try:
                        conn.rollback()
                    except Exception:  # noqa: BLE001, S110 - best effort on a broken connection
                        pass
            for waiter in waiters:
                waiter.set()
        conn.close()

    # -- reading ---------------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql.replace("?", self.placeholder), tuple(params))
            return list(cur.fetchall())
        finally:
            conn.close()


class SQLiteLedger(LedgerStore):
    def __init__(self, path: str | Path, rollups: bool = True) -> None:
        super().__init__(rollups)
        self.path = str(path)

    def connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


class PostgresLedger(LedgerStore):
    """PostgreSQL, for several gateway replicas sharing one ledger. `schema` isolates (tests use their own)."""

    placeholder = "%s"

    def __init__(self, dsn: str, schema: str = "public", rollups: bool = True) -> None:
        super().__init__(rollups)
        self.dsn = dsn
        self.schema = schema

    def connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(f'SET search_path TO "{self.schema}"')
        conn.commit()
        return conn


def open_store(section: dict[str, Any]) -> LedgerStore:
    if section.get("dsn"):
        return PostgresLedger(section["dsn"], section.get("schema", "public"), section.get("rollups", True))
    return SQLiteLedger(section.get("path", "scrimp-ledger.db"), section.get("rollups", True))
