"""The semantic-cache pipeline stage (after the exact cache).

Eligible: a final user turn of plain text, no tool results pending, one choice, temperature unset or 0
(a feature's policy may allow any temperature), and the feature not switched off. A hit answers with the
cached response and says so: `x-scrimp-cache: semantic`, `x-scrimp-cache-entry`, `-similarity`, `-score`.
`POST /v1/scrimp/cache/feedback` lets a client mark a cached answer wrong: the entry goes, the pair is
kept as a label for `scrimp cache train`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scrimp import pricing
from scrimp.cache.exact import _strip_cache_control, _tenant_slug, decode, encode, fresh, reused_answer
from scrimp.cache.exact import native_material as _native_material
from scrimp.cache.semantic.batcher import BatchingEmbedder
from scrimp.cache.semantic.cache import SemanticCache
from scrimp.cache.semantic.model import load_model
from scrimp.cache.semantic.normalize import normalize
from scrimp.cache.semantic.snapshots import IndexSnapshots
from scrimp.cache.semantic.store import SemanticStore, open_store
from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.metrics import Sample
from scrimp.options import ConfigError, Where
from scrimp.pipeline import Call, Next, Reply, StreamEvent
from scrimp.stage import Stage, StageContext

log = logging.getLogger("scrimp.semantic_cache")


def namespace(tenant: str, feature: str, model: str, req: ChatRequest) -> str:
    """Everything but the final question, which must match exactly for a cached answer to be right."""
    material = {
        "feature": feature, "model": model, "system": _strip_cache_control(req.system),
        "history": [{"role": m["role"], "content": _strip_cache_control(m["content"])} for m in req.messages[:-1]],
        "tools": _strip_cache_control(req.tools), "tool_choice": req.tool_choice,
        "response_format": req.response_format, "max_tokens": req.max_tokens, "stop": req.stop,
        "extra": req.extra,
    }
    native = _native_material(req)
    if native:
        material["native"] = native
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"{_tenant_slug(tenant)}:{digest}"


def final_question(req: ChatRequest) -> str | None:
    """The final user turn's text, or None when the request is not a plain question."""
    if not req.messages or req.messages[-1]["role"] != "user":
        return None
    blocks = req.messages[-1]["content"]
    if any(b.get("type") != "text" for b in blocks):  # tool results, images: not a cacheable question
        return None
    text = normalize("\n".join(b.get("text", "") for b in blocks))
    return text or None


@dataclass
class SemanticFeaturePolicy:
    enabled: bool | None = None  # None: the stage's `enabled`
    any_temperature: bool = False
    ttl_s: float | None = None
    max_false_hit: float | None = None  # this feature's own false-hit target (its own threshold)


@dataclass
class SemanticCacheOptions:
    path: str = "scrimp-semantic.db"  # SQLite (default)
    dsn: str | None = None  # PostgreSQL, shared by replicas
    schema: str = "public"
    max_entries: int = 100_000
    model: str | None = None  # a directory from `scrimp cache train` (default: the shipped model)
    runtime: Literal["onnx", "torch"] = "onnx"
    embeddings: dict[str, Any] | None = None  # a remote endpoint: {base_url, model, api_key, dimensions}
    threshold: float | None = None
    max_false_hit: float | None = None
    ttl_s: float = 86_400.0
    enabled: bool = True
    hnsw_from: int = 10_000
    index_dir: str | None = None  # "" turns graph saving off
    snapshot_every_s: float = 600.0
    features: dict[str, SemanticFeaturePolicy] = field(default_factory=dict)

    def check(self, where: Where) -> None:
        for key in ("max_false_hit",):
            value = getattr(self, key)
            if value is not None and not 0 < value < 1:
                raise where.key(key).error(f"must be between 0 and 1, got {value}")
        for name, policy in self.features.items():
            if policy.max_false_hit is not None and not 0 < policy.max_false_hit < 1:
                raise where.key("features").key(name).key("max_false_hit").error(
                    f"must be between 0 and 1, got {policy.max_false_hit}")


FEEDBACK_MAX_BYTES = 64 * 1024
FEEDBACK_MAX_QUESTION = 8_000  # characters


def _bad_feedback(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


class SemanticCacheStage(Stage):
    name = "semantic_cache"
    Options = SemanticCacheOptions
    caller_paths = ("/v1/scrimp/cache/feedback",)  # a caller's feedback on its own tenant's entries
    RECENT_HITS = 10_000

    def __init__(self, cache: SemanticCache, *, ttl_s: float = 86_400.0,
                 features: dict[str, SemanticFeaturePolicy] | None = None,
                 enabled: bool = True, snapshot_every_s: float = 600.0) -> None:
        self.cache = cache
        self.snapshot_every_s = snapshot_every_s
        self._snapshotter: asyncio.Task | None = None
        self._preloader: asyncio.Task | None = None
        self._stop_preload = threading.Event()
        self.ttl_s = ttl_s
        self.features = features or {}  # feature -> {"enabled", "any_temperature", "ttl_s", "max_false_hit"}
        self.enabled = enabled
        self.embedder = BatchingEmbedder(cache.model)
        self._recent: OrderedDict[tuple[str, int], str] = OrderedDict()  # (tenant, entry id) -> question asked
        self._pending: set[asyncio.Task] = set()
        self._thresholds: dict[str, float] = {}
        self.lookups = {"hit": 0, "miss": 0}
        self.removed_by_feedback = 0

    @classmethod
    def build(cls, options: SemanticCacheOptions, ctx: StageContext) -> SemanticCacheStage:
        return from_options(options)

    def _policy(self, call: Call) -> SemanticFeaturePolicy:
        return self.features.get(call.attribution.feature or "") or _DEFAULT_POLICY

    def eligible(self, call: Call) -> bool:
        policy = self._policy(call)
        if not (self.enabled if policy.enabled is None else policy.enabled):
            return False
        req = call.request
        if req.n != 1:
            return False
        return policy.any_temperature or not req.temperature

    async def handle(self, call: Call, next: Next) -> Reply:
        question = final_question(call.request) if self.eligible(call) else None
        if question is None:
            return await next(call)
        tenant, feature = call.attribution.tenant, call.attribution.feature or ""
        ns = namespace(tenant, feature, call.requested_model, call.request)
        memo_key = (self.cache.model.embedder.key, question)
        vector = call.embeddings.get(memo_key)
        if "no-cache" not in call.cache_control:
            if vector is None:
                vector = call.embeddings[memo_key] = await self.embedder.embed(question)
            hit, _ = await asyncio.to_thread(self.cache.lookup, ns, question, vector,
                                             self._threshold(call))
            self.lookups["hit" if hit is not None else "miss"] += 1
            if hit is not None:
                resp, cost = decode(hit.entry.response)
                call.decisions.update(cache="semantic", semantic_entry=hit.entry.id,
                                      semantic_similarity=round(hit.similarity, 4))
                call.save(*reused_answer(self.name, cost))
                self._remember(tenant, hit.entry.id, question)
                return Reply(response=fresh(resp, call), served_model=resp.model, served_provider="cache",
                             billed=False,
                             headers={"x-scrimp-cache-entry": str(hit.entry.id),
                                      "x-scrimp-cache-similarity": f"{hit.similarity:.4f}",
                                      "x-scrimp-cache-score": f"{hit.score:.4f}"})
        call.decisions.setdefault("cache", "miss")
        reply = await next(call)
        if "no-store" in call.cache_control:
            return reply
        policy_ttl = self._policy(call).ttl_s
        ttl = self.ttl_s if policy_ttl is None else policy_ttl
        store = (tenant, ns, feature, question, vector, ttl)
        if reply.stream is None:
            if reply.response is not None:
                self._store_later(store, reply, reply.response)
            return reply
        reply.stream = self._store_when_done(store, reply, reply.stream)
        return reply

    def _threshold(self, call: Call) -> float | None:
        """A feature's own false-hit target maps to its own threshold (from the model's calibration curve)."""
        target = self._policy(call).max_false_hit
        if target is None:
            return None
        return self.cache.model.threshold_for(target)

    def _remember(self, tenant: str, entry_id: int, question: str) -> None:
        self._recent[(tenant, entry_id)] = question
        if len(self._recent) > self.RECENT_HITS:
            self._recent.popitem(last=False)

    def _store_later(self, store: tuple, reply: Reply, resp: ChatResponse) -> None:
        # the client does not wait for the write (an embedding, a row): it runs after the answer is out
        task = asyncio.get_running_loop().create_task(self._store(store, reply, resp))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store(self, store: tuple, reply: Reply, resp: ChatResponse) -> None:
        tenant, ns, feature, question, vector, ttl = store
        if resp.stop_reason not in ("end_turn", "stop_sequence", "tool_use", "max_tokens") or not resp.content:
            return  # an empty or failed answer is not one to serve again (max_tokens is in the namespace)
        try:
            cost = pricing.cost(reply.served_model, reply.served_provider or None, resp.usage)
        except pricing.UnknownPrice:
            cost = 0.0
        try:
            if vector is None:
                vector = await self.embedder.embed(question)
            await asyncio.to_thread(self.cache.insert, tenant, ns, feature, question, vector, encode(resp, cost),
                                    cost, ttl)
        except Exception:
            log.exception("semantic cache: storing an entry failed")

    async def _store_when_done(self, store: tuple, reply: Reply,
                               stream: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        async for event in stream:
            if event.kind == "done" and event.response is not None:
                self._store_later(store, reply, event.response)
            yield event

    async def drain(self) -> None:
        """Wait for pending writes (tests and graceful stop)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- feedback -------------------------------------------------------------------------------
    async def feedback(self, request: Request) -> JSONResponse:
        from scrimp.attribution import tenant_of

        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > FEEDBACK_MAX_BYTES:
            return _bad_feedback(413, f"a feedback body is at most {FEEDBACK_MAX_BYTES} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > FEEDBACK_MAX_BYTES:
                return _bad_feedback(413, f"a feedback body is at most {FEEDBACK_MAX_BYTES} bytes")
        try:
            body = orjson.loads(raw)
            entry_id = int(body["entry_id"])
            correct = body["correct"]  # required: a missing verdict must not delete an entry
            if not isinstance(correct, bool):
                raise TypeError("'correct' is not a boolean")
            question = body.get("question")
            if question is not None and (not isinstance(question, str) or len(question) > FEEDBACK_MAX_QUESTION):
                raise TypeError("'question' is not a string of a question's length")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return _bad_feedback(400, "body must be JSON with an integer 'entry_id', a boolean 'correct' (true: the "
                                      "cached answer was right; false: it was wrong, the entry is removed) and "
                                      f"optionally the 'question' asked (a string of at most {FEEDBACK_MAX_QUESTION} "
                                      "characters)")
        tenant = tenant_of(request.headers)
        # the question this gateway saw asked, when it remembers it, over what the body says
        asked = self._recent.get((tenant, entry_id)) or question
        if correct:
            entry = await asyncio.to_thread(self.cache.store.get, entry_id)
            if entry is None or entry.tenant != tenant:
                return JSONResponse({"error": {"message": f"no cache entry {entry_id}", "type": "not_found_error"}},
                                    status_code=404)
            if asked:
                await asyncio.to_thread(self.cache.store.add_feedback, tenant, entry.feature, entry.query, asked, 1)
            return JSONResponse({"entry_id": entry_id, "removed": False})
        removed = await asyncio.to_thread(self.cache.feedback_wrong, tenant, entry_id, asked)
        self.removed_by_feedback += int(removed)
        if not removed:
            return JSONResponse({"error": {"message": f"no cache entry {entry_id}", "type": "not_found_error"}},
                                status_code=404)
        return JSONResponse({"entry_id": entry_id, "removed": True})

    def metrics(self) -> list[Sample]:
        """For GET /metrics."""
        help_ = "Semantic-cache lookups (eligible requests not marked no-cache), by result."
        out = [Sample("scrimp_semantic_cache_lookups_total", "counter", help_, n, {"result": result})
               for result, n in self.lookups.items()]
        out.append(Sample("scrimp_semantic_cache_feedback_removed_total", "counter",
                          "Entries removed because a client marked the answer wrong.", self.removed_by_feedback))
        if self.cache.size is not None:
            out.append(Sample("scrimp_semantic_cache_entries", "gauge", "Entries in the store (as this gateway "
                              "last counted them).", self.cache.size))
        return out

    def http_routes(self) -> list[Route]:  # type: ignore[override]
        return [Route("/v1/scrimp/cache/feedback", self.feedback, methods=["POST"])]

    async def start(self) -> None:
        from scrimp.blas_threads import serve_with_one_blas_thread

        serve_with_one_blas_thread()
        # load (and on first use export) the embedder now, not on the first request
        await asyncio.to_thread(self.cache.model.embed, ["warm up"])
        if self.cache.snapshots is not None:
            # saved graphs are read in the background: the gateway serves meanwhile
            self._preloader = asyncio.get_running_loop().create_task(self._preload())
            if self.snapshot_every_s > 0:
                self._snapshotter = asyncio.get_running_loop().create_task(self._save_indexes_every())

    async def _preload(self) -> None:
        try:
            loaded = await asyncio.to_thread(self.cache.preload, self._stop_preload)
            if loaded:
                log.info("semantic cache: %d saved index(es) read back", loaded)
        except Exception:
            log.exception("semantic cache: reading saved indexes failed; they load on first use instead")

    async def _save_indexes_every(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_every_s)
            try:
                await asyncio.to_thread(self.cache.save_indexes)
            except Exception:
                log.exception("semantic cache: saving index snapshots failed")

    async def close(self) -> None:
        if self._snapshotter is not None:
            self._snapshotter.cancel()
        if self._preloader is not None:
            self._stop_preload.set()
            await asyncio.gather(self._preloader, return_exceptions=True)  # ends after the graph it is reading
        await self.drain()
        try:
            await asyncio.to_thread(self.cache.save_indexes)  # the next start reads these instead of rebuilding
        except Exception:
            log.exception("semantic cache: saving index snapshots failed")
        await self.embedder.close()
        self.cache.store.close()


_DEFAULT_POLICY = SemanticFeaturePolicy()


def from_options(options: SemanticCacheOptions) -> SemanticCacheStage:
    try:
        model = load_model(options.model, runtime=options.runtime, remote=options.embeddings)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from exc
    if options.threshold is not None:
        model.threshold = options.threshold
    try:  # every false-hit target must be one the model's calibration supports: refused now, not per request
        if options.max_false_hit is not None:
            model.threshold = model.threshold_for(options.max_false_hit)
        for policy in options.features.values():
            if policy.max_false_hit is not None:
                model.threshold_for(policy.max_false_hit)
    except ValueError as exc:
        raise ConfigError(f"max_false_hit: {exc}") from exc
    section = {"path": options.path, "dsn": options.dsn, "schema": options.schema,
               "max_entries": options.max_entries, "index_dir": options.index_dir}
    store = open_store(section)
    cache = SemanticCache(store, model, hnsw_from=options.hnsw_from, snapshots=snapshots_for(section, store))
    return SemanticCacheStage(cache, ttl_s=options.ttl_s, features=options.features, enabled=options.enabled,
                              snapshot_every_s=options.snapshot_every_s)


def snapshots_for(section: dict[str, Any], store: SemanticStore) -> IndexSnapshots | None:
    """Where HNSW indexes are saved: `index_dir`, else beside a SQLite file; none for an in-memory store,
    nor for PostgreSQL unless `index_dir` is given (each replica then keeps its own copy)."""
    if section.get("index_dir") is not None:
        return IndexSnapshots(section["index_dir"]) if section["index_dir"] else None
    path = getattr(store, "path", None)
    if path and path != ":memory:":
        return IndexSnapshots(f"{path}.indexes")
    return None
