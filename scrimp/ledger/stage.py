"""The ledger stage: observes every call (outermost in the chain) and records one row with its price."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from scrimp import pricing
from scrimp.canonical import ChatResponse, Usage
from scrimp.gateway.stages import GatewayContext
from scrimp.ledger.store import LedgerStore, open_store
from scrimp.pipeline import Call, Next, Reply, StreamEvent

log = logging.getLogger("scrimp.ledger")


class LedgerStage:
    name = "ledger"

    def __init__(self, store: LedgerStore, providers: dict[str, str]) -> None:
        self.store = store
        self.providers = providers  # model -> provider, to price the requested model

    async def start(self) -> None:
        self.store.start()

    async def close(self) -> None:
        self.store.close()

    async def handle(self, call: Call, next: Next) -> Reply:
        try:
            reply = await next(call)
        except Exception as exc:
            call.status, call.error = "error", str(exc)[:500]
            self.record(call, None, "", "")
            raise
        if reply.stream is None:
            self.record(call, reply.response, reply.served_model, reply.served_provider)
            return reply
        reply.stream = self._watch(call, reply, reply.stream)
        return reply

    async def _watch(self, call: Call, reply: Reply, stream: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        recorded = False
        try:
            async for event in stream:
                if event.kind == "done":
                    recorded = True
                    self.record(call, event.response, reply.served_model, reply.served_provider)
                yield event
        except Exception as exc:
            call.status, call.error = "error", str(exc)[:500]
            raise
        finally:
            if not recorded:
                if call.status == "ok":
                    call.status = "client_cancelled"
                self.record(call, reply.partial() if reply.partial else None, reply.served_model,
                            reply.served_provider)

    def price(self, call: Call, resp: ChatResponse | None, served: str, provider: str) -> tuple[float, float]:
        usage = resp.usage if resp is not None else Usage()
        extra = sum(float(c.get("cost_usd", 0.0)) for c in call.extra_costs)
        if call.decisions.get("cache") in ("exact", "semantic"):
            return extra, float(call.decisions.get("cached_cost_usd", 0.0))
        try:
            cost = pricing.cost(served, provider or None, usage) + extra
        except pricing.UnknownPrice:
            log.warning("no price for %s; recorded at 0", served)
            return extra, extra
        baseline_usage = pricing.uncached(usage) if call.decisions.get("prompt_cache") == "planned" else usage
        try:
            baseline = pricing.cost(call.requested_model, self.providers.get(call.requested_model), baseline_usage)
        except pricing.UnknownPrice:
            baseline = cost
        return cost, baseline

    def record(self, call: Call, resp: ChatResponse | None, served: str, provider: str) -> None:
        try:
            cost, baseline = self.price(call, resp, served, provider)
            call.cost_usd, call.baseline_usd = cost, baseline
            usage = resp.usage if resp is not None else Usage()
            now = time.perf_counter()
            decisions = {k: v for k, v in call.decisions.items() if not k.startswith("_")}
            row: dict[str, Any] = {
                "ts": time.time(), "request_id": call.request_id, "tenant": call.attribution.tenant,
                "user_id": call.attribution.user, "feature": call.attribution.feature,
                "inbound": call.request.inbound, "requested_model": call.requested_model,
                "served_model": served or None, "provider": provider or None,
                "input_tokens": usage.input, "output_tokens": usage.output, "cache_read_tokens": usage.cache_read,
                "cache_write_5m_tokens": usage.cache_write_5m, "cache_write_1h_tokens": usage.cache_write_1h,
                "reasoning_tokens": usage.reasoning, "cost_usd": cost, "baseline_usd": baseline,
                "saved_usd": baseline - cost, "saving_stage": call.saving_stage,
                "cache": call.decisions.get("cache", "miss"),
                "decisions": orjson.dumps(decisions, default=str).decode(),
                "latency_ms": (now - call.started) * 1000,
                "ttft_ms": (call.first_token_at - call.started) * 1000 if call.first_token_at else None,
                "stream": int(call.request.stream), "status": call.status, "error": call.error,
            }
            self.store.write(row)
        except Exception:
            log.exception("could not record call %s", call.request_id)


def build(section: dict[str, Any], ctx: GatewayContext) -> LedgerStage:
    store = open_store(section)
    ctx.shared["ledger"] = store
    return LedgerStage(store, {name: spec.provider for name, spec in ctx.config.models.items()})
