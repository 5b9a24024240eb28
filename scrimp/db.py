"""One connection to the ledger's database (SQLite or PostgreSQL) for the small tables that live beside the
ledger (gateway keys, stored Responses): used one statement at a time, from worker threads; a connection lost
since its last use is reopened once. The ledger's own store decides how a connection is opened."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Database:
    def __init__(self, connect: Callable[[], Any], placeholder: str = "?", setup: Sequence[str] = (),
                 where: str = "") -> None:
        self._connect = connect
        self.placeholder = placeholder
        self.setup = tuple(setup)  # run on each new connection (CREATE TABLE IF NOT EXISTS ...)
        self.where = where  # for messages: the SQLite file or the PostgreSQL schema
        self._conn: Any = None
        self._lock = threading.Lock()

    @classmethod
    def of_ledger(cls, ledger: Any, setup: Sequence[str] = ()) -> Database | None:
        """A connection to a ledger store's database (SQLiteLedger / PostgresLedger); None for an in-memory or
        missing ledger."""
        from scrimp.ledger.store import PostgresLedger, SQLiteLedger

        if isinstance(ledger, PostgresLedger):
            return cls(ledger.connect, ledger.placeholder, setup, f"PostgreSQL schema {ledger.schema}")
        if isinstance(ledger, SQLiteLedger) and ledger.path != ":memory:":
            return cls(ledger.connect, ledger.placeholder, setup, ledger.path)
        return None

    def execute(self, sql: str, params: Sequence[Any] = (), fetch: str = "") -> Any:
        """Run one statement (`?` placeholders) and commit: `fetch` "one" or "all" returns rows, else the row
        count. The commit also ends a read's transaction, so the next read sees other replicas' writes."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    cur = self._connection().cursor()
                    cur.execute(sql.replace("?", self.placeholder), tuple(params))
                    result = (cur.fetchone() if fetch == "one" else cur.fetchall() if fetch == "all"
                              else cur.rowcount)
                    self._conn.commit()
                    return result
                except Exception:
                    self._drop()
                    if attempt:  # a connection lost since its last use is reopened once
                        raise
        raise AssertionError("unreachable")

    def transaction(self, work: Callable[[Any], T]) -> T:
        """Run `work(cursor)` in one transaction: committed when it returns, rolled back when it raises (several
        statements that must happen together or not at all). `?` placeholders are the caller's to adapt
        (`self.placeholder`)."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    conn = self._connection()
                except Exception:
                    self._drop()
                    if attempt:
                        raise
                    continue
                try:
                    result = work(conn.cursor())
                    conn.commit()
                    return result
                except Exception:
                    try:
                        conn.rollback()
                    except Exception:  # noqa: BLE001 - a lost connection: dropped below
                        self._drop()
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        """The open connection, or a new one with the tables set up (under the lock)."""
        if self._conn is None:
            self._conn = self._connect()
            for ddl in self.setup:
                self._conn.cursor().execute(ddl)
            self._conn.commit()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001, S110 - best effort on a broken connection
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
