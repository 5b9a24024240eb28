"""The lane's durable state, in the ledger's database (SQLite, or PostgreSQL for replicas): the queued lines, the
provider batches they went into, fire-and-forget jobs, the batches clients sent through the passthrough, and the
lease that lets exactly one replica submit and poll.

A line's life: `new` (a job's request, not yet through the pipeline) -> `queued` (shaped by the levers, waiting to
be gathered) -> `submitted` (in a provider batch) -> `done` (its answer or error stored). `recorded` turns to 1 in
the same transaction that writes its ledger row, so a line is billed once, whoever records it and whenever."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scrimp.db import Database

SETUP = [
    """CREATE TABLE IF NOT EXISTS batch_lines (
        id TEXT PRIMARY KEY, job_id TEXT, seq INTEGER, idem TEXT, state TEXT NOT NULL, model TEXT,
        provider TEXT, merge_key TEXT, leader TEXT, batch_id TEXT, request TEXT NOT NULL,
        body_bytes INTEGER NOT NULL DEFAULT 0, who TEXT NOT NULL, result TEXT, error TEXT,
        recorded INTEGER NOT NULL DEFAULT 0, flush_by DOUBLE PRECISION, created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS batch_lines_idem ON batch_lines (idem)",
    "CREATE INDEX IF NOT EXISTS batch_lines_state ON batch_lines (state, model)",
    # the worker looks for unrecorded lines every tick: without this it would scan every line ever answered
    "CREATE INDEX IF NOT EXISTS batch_lines_unrecorded ON batch_lines (recorded, state)",
    "CREATE INDEX IF NOT EXISTS batch_lines_merge ON batch_lines (merge_key)",
    "CREATE INDEX IF NOT EXISTS batch_lines_batch ON batch_lines (batch_id)",
    "CREATE INDEX IF NOT EXISTS batch_lines_leader ON batch_lines (leader)",
    "CREATE INDEX IF NOT EXISTS batch_lines_job ON batch_lines (job_id, seq)",
    """CREATE TABLE IF NOT EXISTS batch_batches (
        id TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, remote_id TEXT, state TEXT NOT NULL,
        lines INTEGER NOT NULL, error TEXT, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
        polled DOUBLE PRECISION NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS batch_batches_state ON batch_batches (state)",
    """CREATE TABLE IF NOT EXISTS batch_jobs (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, webhook TEXT, state TEXT NOT NULL, lines INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt DOUBLE PRECISION, delivered DOUBLE PRECISION,
        webhook_error TEXT, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS batch_jobs_state ON batch_jobs (state)",
    """CREATE TABLE IF NOT EXISTS batch_passthrough (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, who TEXT NOT NULL,
        recorded INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL)""",
    ("CREATE TABLE IF NOT EXISTS batch_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires DOUBLE PRECISION NOT NULL)"),
]

LINE_COLUMNS = ["id", "job_id", "seq", "idem", "state", "model", "provider", "merge_key", "leader", "batch_id",
                "request", "body_bytes", "who", "result", "error", "recorded", "flush_by", "created", "updated"]


@dataclass
class Line:
    id: str
    job_id: str | None
    seq: int | None
    idem: str | None
    state: str
    model: str | None
    provider: str | None
    merge_key: str | None
    leader: str | None
    batch_id: str | None
    request: str
    body_bytes: int
    who: str
    result: str | None
    error: str | None
    recorded: int
    flush_by: float | None
    created: float
    updated: float


_SELECT_LINE = f"SELECT {', '.join(LINE_COLUMNS)} FROM batch_lines"


class GroupCommit:
    """Many requests' small transactions run as one: under load, a commit per request (queue a line, read it,
    record it) is what bounds the lane, and one commit for all that arrived meanwhile costs about as much as one.
    Each request's work runs in a savepoint of its own, so one failing rolls back only itself."""

    def __init__(self, store: LaneStore) -> None:
        self.store = store
        self.pending: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self.draining = False

    async def run(self, work: Callable[[Any], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((work, future))
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                items, self.pending = self.pending, []
                try:
                    outcomes = await asyncio.to_thread(self.store.tx, lambda cur, items=items: self._all(cur, items))
                except Exception as exc:  # noqa: BLE001 - the whole transaction failed: every caller hears it
                    outcomes = [(False, exc)] * len(items)
                for (_, future), (ok, value) in zip(items, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self.draining = False

    @staticmethod
    def _all(cur: Any, items: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        conn = cur.connection
        if isinstance(conn, sqlite3.Connection) and not conn.in_transaction:
            cur.execute("BEGIN")  # else the first savepoint's release would commit on its own
        out: list[tuple[bool, Any]] = []
        for n, (work, _) in enumerate(items):
            cur.execute(f"SAVEPOINT lane_{n}")
            try:
                out.append((True, work(cur)))
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                cur.execute(f"ROLLBACK TO SAVEPOINT lane_{n}")
                out.append((False, exc))
            cur.execute(f"RELEASE SAVEPOINT lane_{n}")
        return out


class LaneStore:
    """Every statement the lane runs; blocking (call from a worker thread), or grouped (`group`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.grouped = GroupCommit(self)

    async def group(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(cursor)` in the next grouped transaction (all-or-nothing for itself)."""
        return await self.grouped.run(work)

    def line_in(self, cur: Any, line_id: str) -> Line | None:
        cur.execute(self.q(_SELECT_LINE + " WHERE id = ?"), (line_id,))
        row = cur.fetchone()
        return Line(*row) if row else None

    def q(self, sql: str) -> str:
        return sql.replace("?", self.db.placeholder)

    def tx(self, work: Callable[[Any], Any]) -> Any:
        return self.db.transaction(work)

    # -- lines ---------------------------------------------------------------------------------------
    def line(self, line_id: str) -> Line | None:
        row = self.db.execute(_SELECT_LINE + " WHERE id = ?", (line_id,), fetch="one")
        return Line(*row) if row else None

    def line_by_idem(self, idem: str) -> Line | None:
        row = self.db.execute(_SELECT_LINE + " WHERE idem = ?", (idem,), fetch="one")
        return Line(*row) if row else None

    def lines_where(self, where: str, params: Sequence[Any] = ()) -> list[Line]:
        return [Line(*r) for r in self.db.execute(f"{_SELECT_LINE} WHERE {where}", params, fetch="all")]

    def insert_line(self, values: dict[str, Any], cur: Any | None = None) -> None:
        cols = [c for c in LINE_COLUMNS if c in values]
        sql = self.q(f"INSERT INTO batch_lines ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        params = tuple(values[c] for c in cols)
        if cur is not None:
            cur.execute(sql, params)
        else:
            self.tx(lambda c: c.execute(sql, params))

    def enqueue(self, values: dict[str, Any]) -> Callable[[Any], str | None]:
        """Queue a shaped line (the work for `group` or `tx`); when an identical line (same merge key) is already
        queued or in flight, this one follows it (answered by its answer, never submitted). Returns the leader's
        id, or None. A line that was a job's `new` line is updated in place."""
        def work(cur: Any) -> str | None:
            cur.execute(self.q("SELECT id FROM batch_lines WHERE merge_key = ? AND leader IS NULL AND state IN "
                               "('queued', 'submitted') AND id <> ? ORDER BY created LIMIT 1"),
                        (values["merge_key"], values["id"]))
            row = cur.fetchone()
            leader = row[0] if row else None
            values["leader"] = leader
            cur.execute(self.q("SELECT state, leader FROM batch_lines WHERE id = ?"), (values["id"],))
            existing = cur.fetchone()
            if existing is None:
                self.insert_line(values, cur)
            elif existing[0] == "new":
                sets = [c for c in values if c != "id"]
                cur.execute(self.q(f"UPDATE batch_lines SET {', '.join(f'{c} = ?' for c in sets)} WHERE id = ? "
                                   "AND state = 'new'"), (*[values[c] for c in sets], values["id"]))
            else:  # queued already (a job line run twice, by two replicas): never queued again
                return existing[1]
            return leader
        return work

    def finish_line(self, line_id: str, result: str | None, error: str | None) -> None:
        """A line answered outside a provider batch (a job line a cache answered, or one refused)."""
        now = time.time()
        self.db.execute("UPDATE batch_lines SET state = 'done', result = ?, error = ?, updated = ? WHERE id = ?",
                        (result, error, now, line_id))

    # -- the lease -----------------------------------------------------------------------------------
    def acquire_lease(self, holder: str, ttl: float, name: str = "worker") -> bool:
        now = time.time()

        def work(cur: Any) -> bool:
            cur.execute(self.q("UPDATE batch_lease SET holder = ?, expires = ? WHERE name = ? AND "
                               "(holder = ? OR expires < ?)"), (holder, now + ttl, name, holder, now))
            if cur.rowcount:
                return True
            cur.execute(self.q("SELECT holder FROM batch_lease WHERE name = ?"), (name,))
            if cur.fetchone() is not None:
                return False
            cur.execute(self.q("INSERT INTO batch_lease (name, holder, expires) VALUES (?, ?, ?)"),
                        (name, holder, now + ttl))
            return True
        try:
            return bool(self.tx(work))
        except Exception:  # noqa: BLE001 - two replicas inserting the first lease row at once: the other one won
            return False

    def release_lease(self, holder: str, name: str = "worker") -> None:
        self.db.execute("UPDATE batch_lease SET expires = 0 WHERE name = ? AND holder = ?", (name, holder))
