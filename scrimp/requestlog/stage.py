"""The `request_log` stage: queues the request and the answer of the chosen features' calls for the log's
writer (redaction, caps and the insert happen there). Listed right after the ledger, it sees the request as the
client sent it, before any lever edits it. A call with `x-scrimp-cache-control: no-store` is never logged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from scrimp.canonical import ChatResponse
from scrimp.metrics import Sample
from scrimp.pipeline import Call, Next, Reply, StreamEvent
from scrimp.requestlog.options import RequestLogOptions
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import RequestLogStore
from scrimp.requestlog.writer import Limits, Pending, RequestLogWriter
from scrimp.stage import Stage, StageContext


class RequestLogStage(Stage):
    name = "request_log"
    Options = RequestLogOptions

    def __init__(self, options: RequestLogOptions, ctx: StageContext) -> None:
        self.options = options
        self.ctx = ctx
        self.features = set(options.features)
        self.tenants = set(options.tenants)
        r = options.redact
        self.redactor = Redactor(r.patterns, r.json_paths, r.defaults, r.replacement)
        self.writer: RequestLogWriter | None = None

    @classmethod
    def build(cls, options: RequestLogOptions, ctx: StageContext) -> RequestLogStage:
        return cls(options, ctx)

    async def start(self) -> None:
        ledger = self.ctx.ledger
        if ledger is None:
            raise RuntimeError("the request_log stage stores beside the ledger: add a ledger stage")
        limits = Limits(self.options.retention_days * 86400.0, self.options.max_rows_per_tenant,
                        self.options.max_body_bytes, self.options.purge_every_s)
        self.writer = RequestLogWriter(RequestLogStore.of_ledger(ledger), self.redactor, limits, self.ctx.clock)
        self.writer.start()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def wants(self, call: Call) -> bool:
        if "no-store" in call.cache_control:
            return False
        if self.tenants and call.attribution.tenant not in self.tenants:
            return False
        return "*" in self.features or (call.attribution.feature or "") in self.features

    async def handle(self, call: Call, next: Next) -> Reply:
        if self.writer is None or not self.wants(call):
            return await next(call)
        request = call.request  # as the client sent it: stages edit copies, never this object
        try:
            reply = await next(call)
        except Exception:
            self._queue(call, request, None, "", "error")
            raise
        if reply.stream is None:
            self._queue(call, request, reply.response, reply.served_model, call.status)
            return reply
        reply.stream = self._watch(call, request, reply, reply.stream)
        return reply

    async def _watch(self, call: Call, request: Any, reply: Reply,
                     stream: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        done: ChatResponse | None = None
        status = "ok"
        try:
            async for event in stream:
                if event.kind == "done":
                    done = event.response
                yield event
        except Exception:
            status = "error"
            raise
        finally:
            if done is None and status == "ok":
                status = "client_cancelled"
            partial = done or (reply.partial() if reply.partial else None)
            self._queue(call, request, partial, reply.served_model, status)

    def _queue(self, call: Call, request: Any, response: ChatResponse | None, served: str, status: str) -> None:
        assert self.writer is not None
        a = call.attribution
        self.writer.submit(Pending(
            {"ts": self.ctx.clock(), "request_id": call.request_id, "tenant": a.tenant, "feature": a.feature,
             "user_id": a.user, "key_id": call.key.id if call.key is not None else None,
             "inbound": request.inbound, "requested_model": call.requested_model, "served_model": served or None,
             "cache": call.decisions.get("cache", "miss"), "stream": int(request.stream),
             "status": status if status != "ok" else call.status},
            request, response))

    def metrics(self) -> list[Sample]:
        w = self.writer
        if w is None:
            return []
        return [Sample("scrimp_request_log_written_total", "counter", "Calls stored in the request log.",
                       w.written),
                Sample("scrimp_request_log_dropped_total", "counter",
                       "Calls the request log could not store (queue full or store error).", w.dropped + w.failed)]

