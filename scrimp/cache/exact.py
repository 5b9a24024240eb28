"""Exact-match response cache: the same request from the same tenant is answered once.

Key = hash of the tenant plus every request field that changes the answer (model, system, messages, tools,
tool choice, sampling and output parameters). By default only deterministic requests are cached
(temperature 0, or a `seed`); a feature's policy can allow more. `x-scrimp-cache-control: no-cache` skips the
lookup, `no-store` the write. A hit makes no upstream call and is recorded with the original call's cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import orjson

from scrimp import pricing
from scrimp.cache.backends import CacheBackend, RedisBackend, SQLiteBackend
from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.gateway.stages import GatewayContext
from scrimp.pipeline import Call, Next, Reply, StreamEvent


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
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{_tenant_slug(tenant)}:{digest}"


def _tenant_slug(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def encode(resp: ChatResponse, cost_usd: float) -> bytes:
    return orjson.dumps({"response": asdict(resp), "cost_usd": cost_usd})


def decode(raw: bytes) -> tuple[ChatResponse, float]:
    data = orjson.loads(raw)
    r = data["response"]
    resp = ChatResponse(id=r["id"], model=r["model"], content=r["content"], stop_reason=r["stop_reason"],
                        stop_sequence=r.get("stop_sequence"), usage=Usage(**r["usage"]),
                        extra_choices=[(c[0], c[1]) for c in r.get("extra_choices", [])])
    return resp, float(data["cost_usd"])


class ExactCacheStage:
    name = "exact_cache"

    def __init__(self, backend: CacheBackend, *, ttl_s: float = 86_400.0, features: dict[str, Any] | None = None,
                 providers: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.features = features or {}  # feature -> {"enabled": bool, "any_temperature": bool, "ttl_s": float}
        self.providers = providers or {}

    def eligible(self, call: Call) -> bool:
        policy = self.features.get(call.attribution.feature or "", {})
        if policy.get("enabled") is False:
            return False
        req = call.request
        return policy.get("any_temperature", False) or req.temperature == 0 or req.seed is not None

    async def handle(self, call: Call, next: Next) -> Reply:
        if not self.eligible(call):
            return await next(call)
        key = cache_key(call.attribution.tenant, call.requested_model, call.request)
        if "no-cache" not in call.cache_control:
            raw = await self.backend.get(key)
            if raw is not None:
                resp, cost = decode(raw)
                call.decisions.update(cache="exact", cached_cost_usd=cost)
                call.saving_stage = self.name
                return Reply(response=resp, served_model=resp.model, served_provider="cache")
        call.decisions.setdefault("cache", "miss")
        reply = await next(call)
        if "no-store" in call.cache_control or reply.served_provider == "cache":
            # a later stage's cached answer (semantic) is not copied here: feedback removing it must stick
            return reply
        ttl = float(self.features.get(call.attribution.feature or "", {}).get("ttl_s", self.ttl_s))
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
        await self.backend.set(key, encode(resp, cost), ttl)

    async def _store_when_done(self, key: str, reply: Reply, stream: AsyncIterator[StreamEvent],
                               ttl: float) -> AsyncIterator[StreamEvent]:
        async for event in stream:
            if event.kind == "done" and event.response is not None:
                await self._store(key, reply, event.response, ttl)
            yield event

    async def close(self) -> None:
        await self.backend.close()


def build(section: dict[str, Any], ctx: GatewayContext) -> ExactCacheStage:
    backend_name = section.get("backend", "sqlite")
    max_entries = int(section.get("max_entries", 100_000))
    if backend_name == "redis":
        backend: CacheBackend = RedisBackend(section.get("url", "redis://127.0.0.1:6379/0"),
                                             section.get("prefix", "scrimp:exact:"), max_entries)
    elif backend_name == "sqlite":
        backend = SQLiteBackend(section.get("path", "scrimp-cache.db"), max_entries)
    else:
        from scrimp.gateway.config import ConfigError

        raise ConfigError(f"stages.exact_cache.backend: must be 'sqlite' or 'redis', got {backend_name!r}")
    return ExactCacheStage(backend, ttl_s=float(section.get("ttl_s", 86_400)), features=section.get("features"),
                           providers={n: s.provider for n, s in ctx.config.models.items()})
