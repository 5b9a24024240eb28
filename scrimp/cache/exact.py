"""Exact-match response cache: the same request from the same tenant is answered once.

Key = hash of the tenant plus every request field that changes the answer (model, system, messages, tools,
tool choice, sampling and output parameters). By default only deterministic requests are cached
(temperature 0, or a `seed`); a feature's policy can allow more. `x-scrimp-cache-control: no-cache` skips the
lookup, `no-store` the write. A hit makes no upstream call and is recorded with the original call's cost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import orjson

from scrimp import pricing
from scrimp.cache.backends import CacheBackend, RedisBackend, SQLiteBackend
from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.pipeline import Call, Next, Reply, StreamEvent, new_request_id
from scrimp.stage import Stage, StageContext

log = logging.getLogger("scrimp.exact_cache")


def _strip_cache_control(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


def cache_key(tenant: str, model: str, req: ChatRequest) -> str:
    """Provider prompt-cache markers do not change an answer, so they are not part of the key."""
    material = {
        "tenant": tenant, "model": model, "system": _strip_cache_control(req.system),
        "messages": [{"role": m["role"], "content": _strip_cache_control(m["content"])} for m in req.messages],
        "tools": _strip_cache_control(req.tools), "tool_choice": req.tool_choice, "max_tokens": req.max_tokens,
        "temperature": req.temperature, "top_p": req.top_p, "stop": req.stop, "n": req.n, "seed": req.seed,
        "response_format": req.response_format, "extra": req.extra,
    }
    native = native_material(req)
    if native:
        material["native"] = native
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{_tenant_slug(tenant)}:{digest}"


def native_material(req: ChatRequest) -> dict[str, Any] | None:
    """What changes the answer beyond the canonical fields, for a request an upstream is sent natively (hosted
    tools, their items: `Native.opaque`); None when nothing does (such a key is the same as before)."""
    return getattr(req.native, "opaque", None) or None


def _tenant_slug(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def encode(resp: ChatResponse, cost_usd: float) -> bytes:
    return orjson.dumps({"response": asdict(resp), "cost_usd": cost_usd})


def decode(raw: bytes) -> tuple[ChatResponse, float]:
    data = orjson.loads(raw)
    r = data["response"]
    resp = ChatResponse(id=r["id"], model=r["model"], content=r["content"], stop_reason=r["stop_reason"],
                        stop_sequence=r.get("stop_sequence"), usage=Usage(**r["usage"]),
                        extra_choices=[(c[0], c[1]) for c in r.get("extra_choices", [])],
                        output_items=r.get("output_items"))
    return resp, float(data["cost_usd"])


@dataclass
class ExactFeaturePolicy:
    enabled: bool = True
    any_temperature: bool = False  # cache sampled answers too (the same one is then served every time)
    ttl_s: float | None = None


@dataclass
class ExactCacheOptions:
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = "scrimp-cache.db"  # sqlite
    url: str = "redis://127.0.0.1:6379/0"  # redis
    prefix: str = "scrimp:exact:"  # redis key prefix
    max_entries: int = 100_000
    max_entries_per_tenant: int | None = None  # one tenant filling the cache evicts its own entries only
    ttl_s: float = 86_400.0
    features: dict[str, ExactFeaturePolicy] = field(default_factory=dict)


def fresh(resp: ChatResponse, call: Call) -> ChatResponse:
    """A reused answer as a new response: its own id (the client may key on it), and its upstream output items
    their own ids (same prefix); `created` is set at rendering."""
    items = resp.output_items
    if items is not None:
        items = [{**item, "id": _new_item_id(item["id"])} if isinstance(item.get("id"), str) else item
                 for item in items]
    return replace(resp, id=call.request_id.removeprefix("req_"), output_items=items)


def _new_item_id(old: str) -> str:
    prefix = old.split("_", 1)[0] if "_" in old else "item"
    return f"{prefix}_{new_request_id()[4:]}"


def reused_answer(lever: str, cost: float) -> tuple[str, str, float]:
    return lever, "the original call's cost of the reused answer", cost


class ExactCacheStage(Stage):
    name = "exact_cache"
    Options = ExactCacheOptions

    def __init__(self, backend: CacheBackend, *, ttl_s: float = 86_400.0,
                 features: dict[str, ExactFeaturePolicy] | None = None) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.features = features or {}

    @classmethod
    def build(cls, options: ExactCacheOptions, ctx: StageContext) -> ExactCacheStage:
        if options.backend == "redis":
            backend: CacheBackend = RedisBackend(options.url, options.prefix, options.max_entries,
                                                 options.max_entries_per_tenant)
        else:
            backend = SQLiteBackend(options.path, options.max_entries, options.max_entries_per_tenant)
        return cls(backend, ttl_s=options.ttl_s, features=options.features)

    def _policy(self, call: Call) -> ExactFeaturePolicy:
        return self.features.get(call.attribution.feature or "") or _DEFAULT_POLICY

    def eligible(self, call: Call) -> bool:
        policy = self._policy(call)
        if not policy.enabled:
            return False
        req = call.request
        return policy.any_temperature or req.temperature == 0 or req.seed is not None

    async def handle(self, call: Call, next: Next) -> Reply:
        if not self.eligible(call):
            return await next(call)
        key = cache_key(call.attribution.tenant, call.requested_model, call.request)
        if "no-cache" not in call.cache_control:
            raw = await self.backend.get(key)
            if raw is not None:
                resp, cost = decode(raw)
                call.decisions["cache"] = "exact"
                call.save(*reused_answer(self.name, cost))
                return Reply(response=fresh(resp, call), served_model=resp.model, served_provider="cache",
                             billed=False)
        call.decisions.setdefault("cache", "miss")
        reply = await next(call)
        if "no-store" in call.cache_control or not reply.billed:
            # a later stage's reused answer (semantic) is not copied here: feedback removing it must stick
            return reply
        policy = self._policy(call)
        ttl = policy.ttl_s if policy.ttl_s is not None else self.ttl_s
        if reply.stream is None:
            if reply.response is not None:
                await self._store(key, reply, reply.response, ttl)
            return reply
        reply.stream = self._store_when_done(key, reply, reply.stream, ttl)
        return reply

    async def _store(self, key: str, reply: Reply, resp: ChatResponse, ttl: float) -> None:
        if resp.stop_reason not in ("end_turn", "stop_sequence", "tool_use", "max_tokens"):
            return
        try:
            cost = pricing.cost(reply.served_model, reply.served_provider or None, resp.usage)
        except pricing.UnknownPrice:
            cost = 0.0
        try:
            await self.backend.set(key, encode(resp, cost), ttl)
        except Exception:  # the answer is out and billed: a cache that cannot store it must not fail the call
            log.exception("exact cache: storing an answer failed")

    async def _store_when_done(self, key: str, reply: Reply, stream: AsyncIterator[StreamEvent],
                               ttl: float) -> AsyncIterator[StreamEvent]:
        async for event in stream:
            if event.kind == "done" and event.response is not None:
                await self._store(key, reply, event.response, ttl)
            yield event

    async def close(self) -> None:
        await self.backend.close()


_DEFAULT_POLICY = ExactFeaturePolicy()
