"""The batch lane as a stage: deferrable calls go to the providers' Batch APIs at half price.

A call is deferred when it carries `x-scrimp-defer: <window>`, when its feature's policy says so, or when another
lever asked for it (`defer_call`). The stage sits last, before the provider call, so the caches have already had
their chance to answer it and the router and the prompt-cache planner have shaped it; what is queued is the
request they made. The line is stored durably, gathered with others of its model into a provider batch by the
worker (scrimp.batch.worker), and the request waits, held open, for its line to finish; then it is answered as
usual (the caches above fill from it) and its ledger row is written, once (scrimp.batch.recorder).

`x-scrimp-defer: flex` (or a feature's `flex: true`) sends an OpenAI call now at the flex service tier instead:
the batch price, a slower answer, and a 429 when the provider has no room, after which the call goes to the
standard tier or the batch queue, as the policy says."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from typing import Any

import orjson
from starlette.routing import BaseRoute

from scrimp.batch import codec, recorder
from scrimp.batch.options import BatchOptions, FeaturePolicy, window_seconds
from scrimp.batch.providers import BatchClient, line_body
from scrimp.batch.store import SETUP, LaneStore, Line
from scrimp.db import Database
from scrimp.formats.errors import APIError
from scrimp.metrics import Sample
from scrimp.options import ConfigError
from scrimp.pipeline import Call, Next, Reply, replay
from scrimp.stage import Stage, StageContext

log = logging.getLogger("scrimp.batch")
DEFER_HINT = "x-scrimp-defer"
DEFER_DECISION = "_batch_defer"  # set by defer_call: a window another lever chose


def defer_call(call: Call, window: str = "24h") -> None:
    """Ask the batch lane to defer this call (for another lever, e.g. a budget's `defer` action): mark it, then
    pass it on with `await next(call)`; the lane, further down the chain, queues it and answers when its line
    finishes. Without a batch stage in the pipeline the mark is ignored and the call is sent as usual."""
    if window_seconds(window) is None and window != "flex":
        raise ValueError(f"not a window: {window!r} (e.g. '1h', '24h', or 'flex')")
    call.decisions[DEFER_DECISION] = window


CALLER_PATHS = ("/v1/scrimp/jobs", "/v1/scrimp/jobs/{job_id}", "/v1/files", "/v1/files/{file_id}",
                "/v1/files/{file_id}/content", "/v1/batches", "/v1/batches/{batch_id}",
                "/v1/batches/{batch_id}/cancel", "/v1/messages/batches", "/v1/messages/batches/{batch_id}",
                "/v1/messages/batches/{batch_id}/cancel", "/v1/messages/batches/{batch_id}/results")


class BatchStage(Stage):
    name = "batch"
    Options = BatchOptions

    def __init__(self, options: BatchOptions, ctx: StageContext) -> None:
        self.options = options
        self.ctx = ctx
        self.store: LaneStore | None = None
        self.client = BatchClient()
        self.waiters: dict[str, asyncio.Future[None]] = {}  # line id -> set when its answer is stored
        self.worker: Any = None
        self.counts: dict[str, int] = {"deferred": 0, "merged": 0, "flex": 0, "flex_busy": 0, "idempotent": 0}

    @classmethod
    def build(cls, options: BatchOptions, ctx: StageContext) -> BatchStage:
        return cls(options, ctx)

    # -- life cycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        db = Database.of_ledger(self.ctx.ledger, SETUP)
        if db is None:
            raise ConfigError("stages.batch: the batch lane keeps its queue in the ledger's database: configure the "
                              "ledger stage with a SQLite file or a PostgreSQL dsn")
        self.store = LaneStore(db)
        await asyncio.to_thread(db.execute, "SELECT 1 FROM batch_lines WHERE 1 = 0")  # tables made, or fail now
        from scrimp.batch.worker import Worker

        self.worker = Worker(self)
        self.worker.start()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.client.close()
        if self.store is not None:
            self.store.db.close()

    def http_routes(self) -> list[BaseRoute]:
        from scrimp.batch import jobs, passthrough

        if self.options.passthrough == "off":
            return jobs.routes(self)
        return [*jobs.routes(self), *passthrough.routes(self)]

    @property
    def caller_paths(self) -> tuple[str, ...]:  # type: ignore[override]
        """With `passthrough: admin`, the providers' Batch APIs are admin endpoints; the jobs stay callers'."""
        if self.options.passthrough == "callers":
            return CALLER_PATHS
        return tuple(p for p in CALLER_PATHS if p.startswith("/v1/scrimp/"))

    def metrics(self) -> list[Sample]:
        return [Sample("scrimp_batch_calls_total", "counter", "Calls the batch lane took, by how (deferred, merged "
                       "with an identical line in flight, flex, flex busy, idempotent retry).", n, {"how": how})
                for how, n in self.counts.items()] + (self.worker.metrics() if self.worker else [])

    # -- the request path ------------------------------------------------------------------------------
    def policy(self, call: Call) -> FeaturePolicy | None:
        return self.options.features.get(call.attribution.feature or "")

    def lane_of(self, call: Call) -> str | None:
        """The window a call is deferred for ('1h'), 'flex', or None (sent as usual)."""
        asked = call.decisions.get(DEFER_DECISION)
        if asked is None and self.options.headers:
            asked = call.hints.get(DEFER_HINT)
        policy = self.policy(call)
        if asked is None and policy is not None:
            asked = "flex" if policy.flex else policy.defer
        if asked is None:
            return None
        asked = asked.strip().lower()
        if asked != "flex" and window_seconds(asked) is None:
            raise APIError(400, f"x-scrimp-defer: expected a window such as '1h' or '24h', or 'flex'; got {asked!r}.")
        return asked

    async def handle(self, call: Call, next: Next) -> Reply:
        lane = self.lane_of(call)
        if lane is None:
            return await next(call)
        spec = self.ctx.models.get(call.target_model)
        why = self._cannot(call, spec)
        if why is not None:
            call.decisions["batch"] = f"sent now: {why}"
            return await next(call)
        if lane == "flex":
            return await self._flex(call, next)
        return await self.defer(call, lane)

    def _cannot(self, call: Call, spec: Any) -> str | None:
        from scrimp.formats import responses_upstream

        if spec is None:
            return "the model is not configured"
        if not spec.api_key:
            return "the model has no provider key in the config (the lane submits with the configured key)"
        if responses_upstream.refusal(call.request) is not None:
            return "hosted tools are served by the Responses API only"
        if call.request.n > 1 and spec.provider == "anthropic":
            return "n > 1"
        return None

    async def defer(self, call: Call, window: str) -> Reply:
        assert self.store is not None
        store = self.store
        idem_key = call.hints.get("idempotency-key")
        idem = f"{call.attribution.tenant}\x1f{idem_key}" if idem_key else None
        line_id = call.request_id
        if call.decisions.get("_batch_job") is None and await asyncio.to_thread(store.line, line_id) is not None:
            # another attempt at this same call was deferred already (an output cap's continuation, a cascade's
            # escalation: forks keep the request id): this one is a line of its own, not a retry of that one
            line_id = f"{call.request_id}.{uuid.uuid4().hex[:8]}"
            idem = None
        if idem is not None:
            existing = await asyncio.to_thread(store.line_by_idem, idem)
            if existing is not None:
                return await self._retry(call, existing)
        spec = self.ctx.models[call.target_model]
        req = call.request
        streamed = req.stream
        if streamed:  # the line is answered whole; the client's stream is replayed from it
            req = call.edit_request()
            req.stream = False
        body = line_body(spec, req)
        raw = codec.request_to_json(req)
        req.stream = streamed  # (this stage's own copy) the row says what the client asked for
        merge_key = hashlib.sha256(orjson.dumps([call.attribution.tenant, spec.name, body],
                                                option=orjson.OPT_SORT_KEYS)).hexdigest()
        window_s = window_seconds(window) or 86400.0
        now = time.time()
        call.decisions["batch"] = "deferred"
        who = recorder.who_of(call)
        for key in ("custom_id", "window"):  # a job line's own, kept for its job's results
            if call.decisions.get(f"_batch_{key}") is not None:
                who[key] = call.decisions[f"_batch_{key}"]
        values = {"id": line_id, "job_id": call.decisions.get("_batch_job"),
                  "seq": call.decisions.get("_batch_seq"), "idem": idem, "state": "queued", "model": spec.name,
                  "provider": spec.provider, "merge_key": merge_key, "request": raw,
                  "body_bytes": len(orjson.dumps(body)) + 100, "who": codec.dumps(who),
                  "flush_by": now + min(self.options.max_wait_s, window_s / 10), "created": now, "updated": now}
        future = self._waiter(line_id)
        try:
            leader = await store.group(store.enqueue(values))
        except Exception:
            self.waiters.pop(line_id, None)
            if idem is not None:  # the same key queued a moment ago by a concurrent retry
                existing = await asyncio.to_thread(store.line_by_idem, idem)
                if existing is not None:
                    return await self._retry(call, existing)
            raise
        self.counts["merged" if leader else "deferred"] += 1
        if leader:
            call.decisions["batch"] = "merged"
        try:
            line = await self._wait(line_id, future)
        except APIError:
            call.recorded = True  # the line is still queued: it is recorded when it finishes, not as this error
            raise
        return await self._answer(call, line, record=True)

    async def _retry(self, call: Call, line: Line) -> Reply:
        """A retry with an idempotency key already used: the stored answer, recorded once (by the first)."""
        self.counts["idempotent"] += 1
        call.recorded, call.cost_usd = True, 0.0  # the first call's row holds the cost; this one pays nothing
        call.decisions["batch"] = "idempotent retry"
        if line.state != "done":
            line = await self._wait(line.id, self._waiter(line.id))
        reply = await self._answer(call, line, record=False)
        reply.headers["x-scrimp-request-id"] = line.id
        return reply

    def _waiter(self, line_id: str) -> asyncio.Future[None]:
        future = self.waiters.get(line_id)
        if future is None or future.done():
            future = self.waiters[line_id] = asyncio.get_running_loop().create_future()
        return future

    def notify(self, ids: list[str]) -> None:
        for line_id in ids:
            future = self.waiters.get(line_id)
            if future is not None and not future.done():
                future.set_result(None)

    async def _wait(self, line_id: str, future: asyncio.Future[None]) -> Line:
        """Until the line is done: woken at once by this replica's worker, or seen in the database when another
        replica's worker stored it (looked at every poll_s, at least 2 s: 200 waiters must not poll the database
        five times a second each)."""
        assert self.store is not None
        deadline = time.monotonic() + self.options.max_wait_for_answer_s
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(future), timeout=max(self.options.poll_s, 2.0))
                except TimeoutError:
                    pass
                line = await self.store.group(lambda cur: self.store.line_in(cur, line_id))
                if line is None:
                    raise APIError(500, f"the batch lane lost line {line_id}")
                if line.state == "done":
                    return line
                if future.done():
                    future = self._waiter(line_id)
                if time.monotonic() > deadline:
                    raise APIError(504, f"line {line_id} is still waiting for its provider batch; fetch its answer "
                                        f"later with GET /v1/scrimp/jobs/{line_id}.")
        finally:
            if self.waiters.get(line_id) is future:
                del self.waiters[line_id]

    async def _answer(self, call: Call, line: Line, *, record: bool) -> Reply:
        """The finished line as this call's reply (or error); its ledger row written once, with this call's own
        records (the levers' savings) when it is the one that queued it."""
        assert self.store is not None
        spec = self.ctx.models.get(line.model or "")
        served, provider = (spec.name, spec.provider) if spec is not None else (line.model or "", line.provider or "")
        resp = codec.response_from_json(line.result) if line.result else None
        error = recorder.error_of(line.error)
        if record:
            rows = recorder.rows_for(call, resp, served, provider, shared=line.leader is not None, error=error)
            if await self.store.group(recorder.write_once(self.store, line.id, rows, self.ctx.ledger)):
                recorder.committed(self.ctx.ledger, rows)
            call.recorded = True
        batch_ref = line.batch_id or line.leader or ""
        if error is not None:
            raise APIError(int(error.get("status") or 502), f"batch line failed: {error.get('message')}",
                           code=error.get("code"))
        assert resp is not None
        resp.id = call.request_id
        headers = {"x-scrimp-batch": batch_ref, "x-scrimp-lane": "batch"}
        if call.request.stream:
            return Reply(stream=replay(resp), served_model=served, served_provider=provider, headers=headers,
                         partial=lambda: resp)
        return Reply(response=resp, served_model=served, served_provider=provider, headers=headers)

    async def _flex(self, call: Call, next: Next) -> Reply:
        """OpenAI's flex tier: now, at the batch price, or the policy's fallback when the provider is busy."""
        spec = self.ctx.models[call.target_model]
        policy = self.policy(call)
        if spec.provider != "openai" or call.request.stream or call.request.inbound == "anthropic" \
                or call.request.native is not None:
            call.decisions["batch"] = "sent now: flex is for non-streamed OpenAI chat calls"
            return await next(call)
        attempt = call.fork()
        attempt.edit_request().extra["service_tier"] = "flex"
        try:
            reply = await next(attempt)
        except APIError as exc:
            if exc.status != 429:
                raise
            self.counts["flex_busy"] += 1
            fallback = policy.on_flex_busy if policy is not None else "standard"
            call.decisions["flex"] = f"busy: {fallback}"
            if fallback == "batch":
                return await self.defer(call, self.options.completion_window)
            return await next(call)
        self.counts["flex"] += 1
        call.adopt(attempt)
        call.decisions["batch"] = "flex"
        resp = reply.response
        ledger = self.ctx.ledger
        if resp is not None and ledger is not None:
            rows = recorder.rows_for(call, resp, reply.served_model, reply.served_provider, shared=False, error=None)
            for table, row in rows:
                ledger.write(row, table)
            call.recorded = True
        reply.headers["x-scrimp-lane"] = "flex"
        return reply


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
