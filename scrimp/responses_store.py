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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from scrimp.db import Database
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
    """The `responses` table in the ledger's database (one connection, one statement at a time: `Database`),
    used from worker threads."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def _run(self, sql: str, *params: Any, fetch: bool = False) -> Any:
        return await asyncio.to_thread(self.db.execute, sql, params, "one" if fetch else "")

    async def start(self) -> None:
        await self._run("SELECT 1 FROM responses WHERE id = ?", "", fetch=True)  # fail fast on a bad store

    async def close(self) -> None:
        self.db.close()

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


def SQLiteResponses(path: str) -> SQLResponses:
    """The store in a SQLite file (the ledger's, or its own)."""
    db = Database.of_ledger(SQLiteLedger(path), (TABLE, INDEX))
    assert db is not None, "an in-memory SQLite file cannot be shared: use ResponsesStore()"
    return SQLResponses(db)


def PostgresResponses(dsn: str, schema: str = "public") -> SQLResponses:
    """The store in a PostgreSQL schema (the ledger's, shared by replicas)."""
    db = Database.of_ledger(PostgresLedger(dsn, schema), (TABLE, INDEX))
    assert db is not None
    return SQLResponses(db)


def open_responses_store(ledger: Any) -> ResponsesStore:
    """The store in the ledger's database, or in memory when there is no ledger (or an in-memory one)."""
    db = Database.of_ledger(ledger, (TABLE, INDEX))
    return SQLResponses(db) if db is not None else ResponsesStore()
