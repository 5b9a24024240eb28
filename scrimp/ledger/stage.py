"""The ledger stage: observes every call (outermost in the chain) and records one row with its price.

A row's cost is what the provider billed for the answer (nothing for an answer no provider was paid for)
plus the call's `Cost` records; its baseline adds the levers' `Saving` records back. Each record is also
kept in the `savings` table, so `scrimp usage --by lever` splits a call's saving between its levers. The
ledger knows no lever by name."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from scrimp import pricing
from scrimp.canonical import ChatResponse, Usage
from scrimp.ledger.store import LedgerStore, open_store
from scrimp.metrics import Sample
from scrimp.options import Where
from scrimp.pipeline import Call, Counterfactual, Next, Reply, StreamEvent
from scrimp.stage import LedgerWriter, Stage, StageContext

log = logging.getLogger("scrimp.ledger")


@dataclass
class LedgerOptions:
    path: str = "scrimp-ledger.db"  # SQLite file (the embedded default)
    dsn: str | None = None  # PostgreSQL, for replicas sharing one ledger
    schema: str = "public"  # PostgreSQL schema (tests use their own)
    rollups: bool = True  # keep the hourly / daily roll-ups the dashboard reads, as rows arrive
    dashboard: bool = True  # serve /dashboard (admin key with auth:) and its JSON API

    def check(self, where: Where) -> None:
        if not self.path and not self.dsn:
            raise where.key("path").error("give a SQLite path or a PostgreSQL dsn")


class LedgerStage(Stage):
    name = "ledger"
    Options = LedgerOptions

    def __init__(self, store: LedgerStore, dashboard: bool = False) -> None:
        self.store = store
        self.dashboard = dashboard and store.rollups  # the dashboard reads the roll-ups only
        if self.dashboard:  # the page and its scripts hold no data: anyone may load them; the API is admin
            from scrimp.dashboard.routes import PAGE_PATHS

            self.open_paths = PAGE_PATHS

    @classmethod
    def build(cls, options: LedgerOptions, ctx: StageContext) -> LedgerStage:
        store = open_store({"path": options.path, "dsn": options.dsn, "schema": options.schema,
                            "rollups": options.rollups})
        ctx.provide_ledger(store)
        return cls(store, options.dashboard)

    def http_routes(self) -> list[Any]:
        if not self.dashboard:
            return []
        from scrimp.dashboard.routes import routes

        return routes(self.store)

    def metrics(self) -> list[Any]:
        return [*self.store.counters.samples(),
                Sample("scrimp_ledger_failed_rows_total", "counter", "Ledger rows dropped because a write failed.",
                       self.store.failed_rows)]

    async def start(self) -> None:
        self.store.start()

    async def close(self) -> None:
        self.store.close()

    async def handle(self, call: Call, next: Next) -> Reply:
        try:
            reply = await next(call)
        except Exception as exc:
            call.status, call.error = "error", str(exc)[:500]
            paid = call.answer  # a stage failed after the provider answered: that answer was still billed
            if paid is not None:
                self.record(call, paid.response, paid.served_model, paid.served_provider, paid.billed)
            else:
                self.record(call, None, "", "", billed=False)
            raise
        if reply.stream is None:
            self.record(call, reply.response, reply.served_model, reply.served_provider, reply.billed)
            return reply
        reply.stream = self._watch(call, reply, reply.stream)
        return reply

    async def _watch(self, call: Call, reply: Reply, stream: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        recorded = False
        try:
            async for event in stream:
                if event.kind == "done":
                    recorded = True
                    self.record(call, event.response, reply.served_model, reply.served_provider, reply.billed)
                yield event
        except Exception as exc:
            call.status, call.error = "error", str(exc)[:500]
            raise
        finally:
            if not recorded:
                if call.status == "ok":
                    call.status = "client_cancelled"
                self.record(call, reply.partial() if reply.partial else None, reply.served_model,
                            reply.served_provider, reply.billed)

    def record(self, call: Call, resp: ChatResponse | None, served: str, provider: str, billed: bool = True) -> None:
        if call.recorded:  # a stage wrote this call's row itself (the batch lane)
            return
        record_call(self.store, call, resp, served, provider, billed)


def answer_cost(resp: ChatResponse | None, served: str, provider: str, billed: bool, batch: bool = False) -> float:
    if not billed or resp is None or not served:
        return 0.0
    try:
        return pricing.cost(served, provider or None, resp.usage, batch=batch)
    except pricing.UnknownPrice:
        log.warning("no price for %s; recorded at 0", served)
        return 0.0


def record_call(store: LedgerWriter, call: Call, resp: ChatResponse | None, served: str, provider: str,
                billed: bool = True, batch: bool = False) -> None:
    """Write the call's row and its saving / cost records; never raises (a ledger problem must not fail a
    request). Also used for calls outside the chat pipeline (embeddings, batch lines). `batch`: the provider
    billed the answer at its Batch API rate."""
    try:
        answer = answer_cost(resp, served, provider, billed, batch)
        # innermost lever first: each undoes its own effect on what really happened (see Counterfactual)
        without: Counterfactual | None = (Counterfactual(resp.usage, served, provider or None)
                                          if resp is not None and served and billed else None)
        for s in reversed(call.savings):
            try:
                without = s.settle(without)
            except Exception:  # a lever's pricing failing must not lose the row
                log.exception("saving of %s could not be priced", s.lever)
                s.usd, s.priced = 0.0, None
        saved: dict[str, float] = {}
        for s in call.savings:
            saved[s.lever] = saved.get(s.lever, 0.0) + s.usd
        extra = sum(c.usd for c in call.costs)
        cost, baseline = answer + extra, answer + sum(saved.values())
        call.cost_usd, call.baseline_usd = cost, baseline
        usage = resp.usage if resp is not None else Usage()
        now = time.time()
        decisions = {k: v for k, v in call.decisions.items() if not k.startswith("_")}
        if call.costs:
            decisions["costs"] = [{"usd": c.usd, "what": c.what, "lever": c.lever, "model": c.model}
                                  for c in call.costs]
        levers = sorted(saved, key=lambda k: -saved[k])
        row: dict[str, Any] = {
            "ts": now, "request_id": call.request_id, "tenant": call.attribution.tenant,
            "user_id": call.attribution.user, "feature": call.attribution.feature,
            "inbound": call.request.inbound, "requested_model": call.requested_model,
            "served_model": served or None, "provider": provider or None,
            "input_tokens": usage.input, "output_tokens": usage.output, "cache_read_tokens": usage.cache_read,
            "cache_write_5m_tokens": usage.cache_write_5m, "cache_write_1h_tokens": usage.cache_write_1h,
            "reasoning_tokens": usage.reasoning, "cost_usd": cost, "baseline_usd": baseline,
            "saved_usd": baseline - cost, "saving_stage": ",".join(levers) or None,
            "cache": call.decisions.get("cache", "miss"),
            "decisions": orjson.dumps(decisions, default=str).decode(),
            "latency_ms": (time.perf_counter() - call.started) * 1000,
            "ttft_ms": (call.first_token_at - call.started) * 1000 if call.first_token_at else None,
            "stream": int(call.request.stream), "status": call.status, "error": call.error,
            "key_id": call.key.id if call.key is not None else None,
        }
        store.write(row)
        base = {"ts": now, "request_id": call.request_id, "tenant": call.attribution.tenant,
                "feature": call.attribution.feature}
        for s in call.savings:
            store.write({**base, "kind": "saving", "lever": s.lever, "usd": s.usd, "detail": s.compared_to},
                        table="savings")
        for c in call.costs:
            store.write({**base, "kind": "cost", "lever": c.lever, "usd": c.usd, "detail": c.what}, table="savings")
    except Exception:
        log.exception("could not record call %s", call.request_id)
