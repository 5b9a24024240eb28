"""The rate_limits stage: requests and tokens per minute per key and per tenant, exact across replicas.

Each call reserves one request and its worst-case tokens (input estimated from the request, plus `max_tokens`
of output, or `default_max_tokens` when it sets none) against every limit it falls under, atomically (the
reserve-then-settle counters of scrimp.shared_counters: one Lua script in Redis, one transaction in SQLite),
and settles the tokens to what the provider really processed once the answer is known (nothing for a cache
hit, which no provider served). A call that would pass a limit is refused with 429 in the caller's API shape
and a `retry-after` computed from when enough of the window's usage leaves it. See docs/rate-limits.md."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from scrimp.canonical import ChatResponse
from scrimp.formats.errors import APIError
from scrimp.metrics import Sample
from scrimp.options import Where
from scrimp.pipeline import Call, Next, Reply, StreamEvent, new_request_id
from scrimp.shared_counters import (
    STORE_ERRORS,
    Counter,
    CountingStore,
    OnStoreError,
    store_failed,
)
from scrimp.stage import Stage, StageContext
from scrimp.tokens import request_input_tokens

log = logging.getLogger("scrimp.ratelimit")

WINDOW_S = 60.0


@dataclass
class RateLimit:
    per: Literal["key", "tenant"]  # one counter per gateway key (the caller's key hash without auth) or tenant
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (input + output)
    tenant: str | None = None  # only this tenant's calls (all when unset)
    feature: str | None = None  # only this feature's calls

    def check(self, where: Where) -> None:
        if self.rpm is None and self.tpm is None:
            raise where.error("a rate limit sets rpm, tpm or both")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise where.key(name).error("a limit above 0 per minute")


@dataclass
class RateLimitsOptions:
    limits: list[RateLimit] = field(default_factory=list)
    redis_url: str | None = None  # shared state for replicas; else the SQLite file `path`
    prefix: str = "scrimp:ratelimit:"  # Redis key prefix
    path: str = "scrimp-ratelimits.db"
    default_max_tokens: int = 4096  # output tokens counted up front for a request that sets no max_tokens
    reservation_ttl_s: float = 600.0  # a reservation never settled (a crash) stops counting after this
    on_store_error: OnStoreError = "refuse"  # the state unreachable: refuse calls (503), or `allow` them unchecked


@dataclass
class _Scoped:
    limit: RateLimit
    scope: str
    requests: Counter | None
    tokens: Counter | None


class RateLimitsStage(CountingStore, Stage):
    name = "rate_limits"
    Options = RateLimitsOptions

    def __init__(self, options: RateLimitsOptions, ctx: StageContext) -> None:
        self.options = options
        self.ctx = ctx
        self.refused: dict[tuple[str, str], int] = {}  # (per, "requests" | "tokens") -> calls refused
        self.unchecked = 0  # calls let through unchecked while the state was unreachable (on_store_error: allow)

    @classmethod
    def build(cls, options: RateLimitsOptions, ctx: StageContext) -> RateLimitsStage:
        return cls(options, ctx)

    async def start(self) -> None:
        self.open_store()

    async def close(self) -> None:
        await self.close_store()

    def scoped(self, call: Call) -> list[_Scoped]:
        out = []
        for i, lim in enumerate(self.options.limits):
            if lim.tenant is not None and lim.tenant != call.attribution.tenant:
                continue
            if lim.feature is not None and lim.feature != call.attribution.feature:
                continue
            scope = call.attribution.tenant if lim.per == "tenant" else self._key_of(call)
            base = f"{i}:{lim.per}={scope}"
            ttl = int(WINDOW_S + self.options.reservation_ttl_s) + 60
            out.append(_Scoped(
                lim, scope,
                Counter(base + ":rpm", lim.rpm, WINDOW_S, ttl) if lim.rpm else None,
                Counter(base + ":tpm", lim.tpm, WINDOW_S, ttl) if lim.tpm else None))
        return out

    @staticmethod
    def _key_of(call: Call) -> str:
        if call.key is not None:
            return call.key.id
        if call.client_key:  # without auth: the caller's own provider key, hashed (never the key itself)
            return "caller-" + hashlib.sha256(call.client_key.encode()).hexdigest()[:16]
        return call.attribution.tenant

    async def handle(self, call: Call, next: Next) -> Reply:
        scoped = self.scoped(call)
        if not scoped:
            return await next(call)
        store = self.open_store()
        now = self.ctx.clock()
        ttl = self.options.reservation_ttl_s
        req = call.request
        tokens = request_input_tokens(req) + (req.max_tokens or self.options.default_max_tokens) * max(1, req.n)
        rid = new_request_id()
        # requests first: a call refused for tokens still used a request slot, as providers count it
        request_limits = [s for s in scoped if s.requests is not None]
        token_limits = [s for s in scoped if s.tokens is not None]
        request_counters = [s.requests for s in request_limits]
        token_counters = [s.tokens for s in token_limits]
        for kind, limits, counters, amount in (("requests", request_limits, request_counters, 1),
                                               ("tokens", token_limits, token_counters, tokens)):
            if not counters:
                continue
            try:
                res = await store.reserve(counters, rid, amount, now, ttl)  # type: ignore[arg-type]
            except STORE_ERRORS as exc:
                store_failed(exc, "rate limit state", self.options.on_store_error)
                self.unchecked += 1
                return await next(call)
            if not res.ok:
                assert res.refused is not None
                if kind == "tokens" and request_counters:
                    await store.settle(request_counters, rid, 1, self.ctx.clock())  # type: ignore[arg-type]
                self._refuse(call, limits[res.refused], kind, amount, res.retry_after_s)
        settled = False

        async def settle(resp: ChatResponse | None, billed: bool) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            used = resp.usage if (billed and resp is not None) else None
            real = (used.input + used.cache_read + used.cache_write_5m + used.cache_write_1h + used.output
                    if used is not None else 0)
            try:
                t = self.ctx.clock()
                if request_counters:
                    await store.settle(request_counters, rid, 1, t)
                if token_counters:
                    await store.settle(token_counters, rid, real, t)
            except Exception:  # the reservations expire on their own; the answer must not be lost
                log.exception("could not settle rate-limit reservation %s", rid)

        try:
            reply = await next(call)
        except BaseException:
            paid = call.answer
            await settle(paid.response if paid else None, bool(paid and paid.billed))
            raise
        if reply.stream is None:
            await settle(reply.response, reply.billed)
            return reply
        reply.stream = self._watch(reply, reply.stream, settle)
        return reply

    @staticmethod
    async def _watch(reply: Reply, stream: AsyncIterator[StreamEvent], settle: Any) -> AsyncIterator[StreamEvent]:
        try:
            async for event in stream:
                if event.kind == "done":
                    await settle(event.response, reply.billed)
                yield event
        finally:
            await settle(reply.partial() if reply.partial else None, reply.billed)

    def _refuse(self, call: Call, s: _Scoped, kind: str, amount: int, retry_after_s: float | None) -> None:
        limit = s.limit.rpm if kind == "requests" else s.limit.tpm
        assert limit is not None
        who = f"{s.limit.per} {s.scope}"
        self.refused[(s.limit.per, kind)] = self.refused.get((s.limit.per, kind), 0) + 1
        call.decisions["rate_limited"] = f"{s.limit.per} {kind}"
        if retry_after_s is None and amount > limit:
            raise APIError(429, f"Rate limit for {who}: this request counts {amount} tokens (its input and "
                                f"max_tokens of output), more than the {limit} tokens per minute allowed; lower "
                                "max_tokens or the input.", code="rate_limit_exceeded",
                           headers={"retry-after": str(int(WINDOW_S))})
        # None here: calls still in flight hold the room, and they settle within seconds
        wait = max(1, math.ceil(retry_after_s if retry_after_s is not None else 1.0))
        raise APIError(429, f"Rate limit for {who} reached: {limit} {kind} per minute. Retry after {wait} s.",
                       code="rate_limit_exceeded", headers={"retry-after": str(wait)})

    def metrics(self) -> list[Sample]:
        return [Sample("scrimp_rate_limited_total", "counter", "Calls refused (429) by a rate limit.", n,
                       {"per": per, "limit": what}) for (per, what), n in sorted(self.refused.items())] + [
            Sample("scrimp_rate_limit_unchecked_total", "counter",
                   "Calls let through unchecked while the rate-limit state was unreachable.", self.unchecked)]
