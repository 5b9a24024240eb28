"""The log's background writer: the request's path only queues what it saw; serialising, redacting, capping and
inserting happen here, a batch per statement and commit (as the ledger's writer does), and old rows are purged
now and then. A full queue drops entries (counted) rather than slow a request."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.requestlog.bodies import (
    answer_text,
    cap_strings,
    final_user_text,
    request_to_json,
    response_to_json,
)
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import INSERT_COLUMNS, RequestLogStore

log = logging.getLogger("scrimp.requestlog")
_STOP = object()


@dataclass
class Pending:
    """What the stage saw of one call, queued as it is (no work on the request's path)."""

    meta: dict[str, Any]  # ts, request_id, tenant, feature, user_id, key_id, inbound, models, cache, stream, status
    request: ChatRequest
    response: ChatResponse | None


@dataclass
class Limits:
    retention_s: float | None = 30 * 86400.0
    max_rows_per_tenant: int | None = 100_000
    max_body_bytes: int = 64 * 1024
    purge_every_s: float = 60.0


class RequestLogWriter:
    batch_size = 200  # rows per INSERT statement (SQLite allows 32766 parameters: 200 x 18 fits)
    batch_window_s = 0.5  # waited for only while fewer than `gather` entries are queued
    gather = 1000  # entries taken per round (several statements, one purge check)
    max_queue = 10_000

    def __init__(self, store: RequestLogStore, redactor: Redactor, limits: Limits,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.redactor = redactor
        self.limits = limits
        self.clock = clock
        self.dropped = 0  # queue full
        self.failed = 0  # store errors
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(self.max_queue)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    def start(self) -> None:
        if self._thread is None:
            self.store.count()  # fail fast at start-up (creates the table)
            self._thread = threading.Thread(target=self._run, name="scrimp-requestlog", daemon=True)
            self._thread.start()

    def submit(self, item: Pending) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        if self._thread is not None:
            done = threading.Event()
            self._queue.put(done)
            self._wake.set()
            done.wait(timeout=30)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
        self.store.close()

    # -- the thread ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        self._purge(self.clock())  # rows that aged out while the gateway was down
        stop = False
        while not stop:
            items = [self._queue.get()]
            if isinstance(items[0], Pending) and self._queue.qsize() < self.gather:
                self._wake.wait(self.batch_window_s)  # gather a batch; flush() and close() cut it short
                self._wake.clear()
            while len(items) < self.gather:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows, waiters = [], []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    try:
                        rows.append(self.row(item))
                    except Exception:
                        self.failed += 1
                        log.exception("request log: could not serialise call %s", item.meta.get("request_id"))
            for start in range(0, len(rows), self.batch_size):
                self._insert(rows[start:start + self.batch_size])
            now = self.clock()
            if stop or waiters or now - self._last_purge >= self.limits.purge_every_s:
                self._purge(now)
            for waiter in waiters:
                waiter.set()

    def row(self, item: Pending) -> tuple[Any, ...]:
        request = self.redactor.body(request_to_json(item.request))
        response = self.redactor.body(response_to_json(item.response)) if item.response is not None else None
        req_bytes, truncated = orjson.dumps(request), False
        request, cut = cap_strings(request, self.limits.max_body_bytes, len(req_bytes))
        truncated |= cut
        req_bytes = orjson.dumps(request) if cut else req_bytes
        if len(req_bytes) > self.limits.max_body_bytes:  # many short strings: keep the shape, not the body
            request = {"model": item.request.model, "omitted": f"over {self.limits.max_body_bytes} bytes",
                       "messages": request.get("messages", [])[-1:]}
            req_bytes = orjson.dumps(request)
        resp_bytes = orjson.dumps(response) if response is not None else b""
        if response is not None:
            response, cut = cap_strings(response, self.limits.max_body_bytes, len(resp_bytes))
            truncated |= cut
            resp_bytes = orjson.dumps(response) if cut else resp_bytes
        meta = dict(item.meta, prompt_text=final_user_text(request), answer_text=answer_text(response) or None,
                    request_json=req_bytes.decode(), response_json=resp_bytes.decode() or None,
                    bytes=len(req_bytes) + len(resp_bytes), truncated=int(truncated))
        return tuple(meta.get(c) for c in INSERT_COLUMNS)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        one = "(" + ", ".join(["?"] * len(INSERT_COLUMNS)) + ")"
        sql = f"INSERT INTO request_log ({', '.join(INSERT_COLUMNS)}) VALUES " + ", ".join([one] * len(rows))
        try:
            self.store.db.execute(sql, [v for row in rows for v in row])
            self.written += len(rows)
        except Exception:
            self.failed += len(rows)
            log.exception("request log write failed; %d entries dropped", len(rows))

    def _purge(self, now: float) -> None:
        self._last_purge = now
        try:
            self.store.purge(now, self.limits.retention_s, self.limits.max_rows_per_tenant)
        except Exception:
            log.exception("request log purge failed")
