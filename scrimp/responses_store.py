"""Stored Responses (`store: true`): what `GET /v1/responses/{id}`, `input_items` and `previous_response_id` need.

Each stored response keeps its Response object and its whole input context (the earlier conversation's items
and its own input, each item with its id), so a follow-up is one read and a deleted response never breaks
another's history. Rows live in the ledger's database (a `responses` table in the SQLite file, or in the
PostgreSQL schema), so they share its retention; with no ledger configured they live in memory (bounded).
Every read and delete names the tenant: one tenant never reads or continues another's response.

Writes are synchronous (in a worker thread): a response is stored before it is returned, so an immediate
follow-up finds it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scrimp.ledger.store import PostgresLedger, SQLiteLedger

TABLE = """CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    response TEXT NOT NULL, input_items TEXT NOT NULL)"""
INDEX = "CREATE INDEX IF NOT EXISTS responses_tenant ON responses (tenant, created_at)"


@dataclass
class StoredResponse:
    id: str
    tenant: str
    created_at: float
    response: dict[str, Any]  # the Response object as returned
    input_items: list[dict[str, Any]]  # the whole input context, oldest first

    def history(self) -> list[dict[str, Any]]:
        """The conversation so far, for a follow-up: the input context, then this response's output."""
        return self.input_items + list(self.response.get("output") or [])


class ResponsesStore:
    """Base and in-memory store (the most recent `max_entries` responses of the process)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._mem: OrderedDict[str, StoredResponse] = OrderedDict()

    async def start(self) -> None:
        """Open the store (create its table)."""

    async def close(self) -> None:
        """Release connections."""

    async def save(self, rec: StoredResponse) -> None:
        self._mem[rec.id] = rec
        while len(self._mem) > self.max_entries:
            self._mem.popitem(last=False)

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        rec = self._mem.get(response_id)
        return rec if rec is not None and rec.tenant == tenant else None

    async def delete(self, tenant: str, response_id: str) -> bool:
        if await self.get(tenant, response_id) is None:
            return False
        del self._mem[response_id]
        return True


class SQLResponses(ResponsesStore):
    """One connection, used from worker threads one statement at a time; subclasses open it."""

    placeholder = "?"

    def __init__(self) -> None:
        super().__init__()
        self._conn: Any = None
        self._lock = threading.Lock()

    def connect(self) -> Any:
        raise NotImplementedError

    def _execute(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._conn is None:
                        self._conn = self.connect()
                        for ddl in (TABLE, INDEX):
                            self._conn.execute(ddl)
                        self._conn.commit()
                    cur = self._conn.execute(sql.replace("?", self.placeholder), params)
                    result = cur.fetchone() if fetch else cur.rowcount
                    self._conn.commit()
                    return result
                except Exception:
                    self._drop()
                    if attempt:  # a connection lost since the last use is reopened once
                        raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001, S110 - best effort on a broken connection
                pass
            self._conn = None

    async def _run(self, sql: str, *params: Any, fetch: bool = False) -> Any:
        return await asyncio.to_thread(self._execute, sql, params, fetch)

    async def start(self) -> None:
        await self._run("SELECT 1 FROM responses WHERE id = ?", "", fetch=True)  # fail fast on a bad store

    async def close(self) -> None:
        with self._lock:
            self._drop()

    async def save(self, rec: StoredResponse) -> None:
        await self._run("INSERT INTO responses (id, tenant, created_at, response, input_items) VALUES (?, ?, ?, ?, ?)",
                        rec.id, rec.tenant, rec.created_at, orjson.dumps(rec.response).decode(),
                        orjson.dumps(rec.input_items).decode())

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        row = await self._run("SELECT created_at, response, input_items FROM responses WHERE id = ? AND tenant = ?",
                              response_id, tenant, fetch=True)
        if row is None:
            return None
        return StoredResponse(response_id, tenant, float(row[0]), orjson.loads(row[1]), orjson.loads(row[2]))

    async def delete(self, tenant: str, response_id: str) -> bool:
        return bool(await self._run("DELETE FROM responses WHERE id = ? AND tenant = ?", response_id, tenant))


class SQLiteResponses(SQLResponses):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn


class PostgresResponses(SQLResponses):
    placeholder = "%s"

    def __init__(self, dsn: str, schema: str = "public") -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = schema

    def connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        conn.execute(f'SET search_path TO "{self.schema}"')
        conn.commit()
        return conn


def open_responses_store(ledger: Any) -> ResponsesStore:
    """The store in the ledger's database, or in memory when there is no ledger (or an in-memory one)."""
    if isinstance(ledger, PostgresLedger):
        return PostgresResponses(ledger.dsn, ledger.schema)
    if isinstance(ledger, SQLiteLedger) and ledger.path != ":memory:":
        return SQLiteResponses(ledger.path)
    return ResponsesStore()
