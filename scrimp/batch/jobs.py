"""Fire-and-forget jobs: `POST /v1/scrimp/jobs` takes many requests (either API's format) at once and returns a
job id at once; `GET /v1/scrimp/jobs/{id}` shows its state and each line's answer, rendered in its request's API
shape; a job may name a webhook, posted the same JSON once every line is done, signed with an HMAC-SHA256 of the
body (`x-scrimp-signature: sha256=<hex>`, key `webhook_secret`) and retried with backoff until a 2xx.

Each line runs through the whole pipeline (`ctx.pipeline`), marked deferred: a cache answers it when it can, the
router and the prompt-cache planner shape it, the lane queues it. `GET /v1/scrimp/jobs/{id}` also answers for a
single deferred call, by its request id (`x-scrimp-request-id`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp import webhooks
from scrimp.attribution import attribute, caller_key, plain_headers, tenant_of
from scrimp.batch import codec, recorder
from scrimp.batch.options import window_seconds
from scrimp.batch.store import Line
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.pipeline import Call, collect, new_request_id

if TYPE_CHECKING:
    from scrimp.batch.stage import BatchStage

log = logging.getLogger("scrimp.batch")
APIS = {"openai": "openai", "/v1/chat/completions": "openai", "anthropic": "anthropic", "/v1/messages": "anthropic"}


def _error(exc: APIError, request: Request) -> Response:
    shape = "anthropic" if request.headers.get("anthropic-version") else "openai"
    return JSONResponse(exc.body(shape), status_code=exc.status, headers={"x-scrimp-request-id": new_request_id()})


def routes(lane: BatchStage) -> list[Route]:
    async def create(request: Request) -> Response:
        try:
            return await create_job(lane, request)
        except APIError as exc:
            return _error(exc, request)

    async def get(request: Request) -> Response:
        try:
            return JSONResponse(await view(lane, request.path_params["job_id"], tenant_of(request.headers)))
        except APIError as exc:
            return _error(exc, request)

    return [Route("/v1/scrimp/jobs", create, methods=["POST"]),
            Route("/v1/scrimp/jobs/{job_id}", get, methods=["GET"])]


async def create_job(lane: BatchStage, request: Request) -> Response:
    assert lane.store is not None
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        raise APIError(400, "Expected {\"requests\": [{\"api\": \"openai\"|\"anthropic\", \"body\": {...}}, ...]}.",
                       param="requests")
    items = body["requests"]
    if len(items) > lane.options.max_job_requests:
        raise APIError(413, f"A job takes at most {lane.options.max_job_requests} requests (got {len(items)}).")
    window = str(body.get("window") or lane.options.completion_window)
    if window_seconds(window) is None:
        raise APIError(400, f"window: expected a duration such as '1h' or '24h', got {window!r}.", param="window")
    webhook = body.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
            raise APIError(400, "webhook: expected an http(s) URL.", param="webhook")
        if not lane.options.webhook_secret:
            raise APIError(400, "webhook: this gateway has no webhook_secret configured to sign deliveries.",
                           param="webhook")
        host = urlsplit(webhook).hostname or ""
        if lane.options.webhook_hosts and host not in lane.options.webhook_hosts:
            raise APIError(400, f"webhook: host {host!r} is not one this gateway posts to (batch.webhook_hosts).",
                           param="webhook")
    headers = plain_headers(request.scope["headers"])
    key = caller_key(request.scope)
    now = time.time()
    job_id = "job_" + uuid.uuid4().hex[:24]
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            raise APIError(400, f"requests[{i}]: expected an object with a 'body'.", param=f"requests[{i}]")
        api = APIS.get(str(item.get("api") or item.get("url") or "openai"))
        if api is None:
            raise APIError(400, f"requests[{i}].api: expected 'openai' or 'anthropic'.", param=f"requests[{i}].api")
        custom_id = str(item.get("custom_id") or i)
        if custom_id in seen:
            raise APIError(400, f"requests[{i}].custom_id: {custom_id!r} is used twice.", param=f"requests[{i}]")
        seen.add(custom_id)
        try:
            req = (anthropic_fmt if api == "anthropic" else openai_fmt).parse_request(dict(item["body"], stream=False))
        except APIError as exc:
            raise APIError(exc.status, f"requests[{i}]: {exc.message}", param=exc.param) from exc
        if req.model not in lane.ctx.models:
            raise APIError(404, f"requests[{i}]: the model '{req.model}' is not configured in scrimp.",
                           param=f"requests[{i}].body.model")
        call = Call(req, attribute(headers, req), request_id=new_request_id())
        call.key = key
        who = recorder.who_of(call)
        who["custom_id"], who["window"] = custom_id, window
        lines.append({"id": call.request_id, "job_id": job_id, "seq": i, "state": "new", "model": req.model,
                      "request": codec.request_to_json(req), "who": codec.dumps(who), "created": now, "updated": now})
    tenant = lines and orjson.loads(lines[0]["who"])["tenant"] or tenant_of(headers)

    def insert(cur: Any) -> None:
        cur.execute(lane.store.q("INSERT INTO batch_jobs (id, tenant, webhook, state, lines, created, updated) "
                                 "VALUES (?, ?, ?, 'open', ?, ?, ?)"), (job_id, tenant, webhook, len(lines), now, now))
        for values in lines:
            lane.store.insert_line(values, cur)
    await asyncio.to_thread(lane.store.tx, insert)
    lane.worker.local_jobs.add(job_id)
    lane.worker.kick()  # its lines start at the next tick, MAX_RUNNING at a time
    return JSONResponse(await view(lane, job_id, tenant, results=False), status_code=200)


async def run_line(lane: BatchStage, line: Line) -> None:
    """One job line through the pipeline. When the lane queued it, the lane stores and records its answer;
    otherwise (a cache hit, a model the lane cannot batch, a refusal) the answer is stored here and the ledger
    stage has recorded it."""
    from scrimp.batch.stage import DEFER_DECISION

    assert lane.store is not None
    worker = lane.worker
    worker.running.add(line.id)  # (already, when the worker spawned it)
    try:
        who = orjson.loads(line.who)
        req = codec.request_from_json(line.request)
        call = recorder.call_of(line.id, who, req)
        call.decisions.update({"_batch_job": line.job_id, "_batch_seq": line.seq,
                               "_batch_custom_id": who.get("custom_id"), "_batch_window": who.get("window"),
                               DEFER_DECISION: who.get("window") or lane.options.completion_window})
        result = error = None
        try:
            reply = await lane.ctx.pipeline(call)
            result = codec.response_to_json(await collect(reply))
        except APIError as exc:
            error = codec.dumps({"status": exc.status, "message": exc.message, "code": exc.code})
        except Exception as exc:
            log.exception("job line %s failed", line.id)
            error = codec.dumps({"status": 500, "message": f"{type(exc).__name__}: {exc}"})
        # answered without the lane: stored now (the ledger stage wrote its row)
        await asyncio.to_thread(lane.store.db.execute,
                                "UPDATE batch_lines SET state = 'done', result = ?, error = ?, recorded = 1, "
                                "updated = ? WHERE id = ? AND state = 'new'", (result, error, time.time(), line.id))
    finally:
        worker.running.discard(line.id)


def _rendered(line: Line, who: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"custom_id": who.get("custom_id", line.id), "request_id": line.id}
    if line.state != "done":
        out["status"] = "pending"
        return out
    if line.result:
        resp = codec.response_from_json(line.result)
        resp.id = line.id
        out["status"] = "succeeded"
        out["response"] = (anthropic_fmt.render_response(resp) if who.get("inbound") == "anthropic"
                           else openai_fmt.render_response(resp))
    else:
        out["status"] = "failed"
        out["error"] = recorder.error_of(line.error)
    return out


async def view(lane: BatchStage, job_id: str, tenant: str, *, results: bool = True) -> dict[str, Any]:
    assert lane.store is not None
    store = lane.store
    row = await asyncio.to_thread(store.db.execute, "SELECT id, tenant, webhook, state, lines, attempts, delivered, "
                                  "webhook_error, created FROM batch_jobs WHERE id = ?", (job_id,), "one")
    if row is None:
        line = await asyncio.to_thread(store.line, job_id)
        if line is None or line.job_id is not None or orjson.loads(line.who).get("tenant") != tenant:
            raise APIError(404, f"No job or deferred request with id '{job_id}'.", code="not_found")
        who = orjson.loads(line.who)
        return {"id": line.id, "object": "scrimp.deferred_request", "model": line.model, **_rendered(line, who)}
    _, owner, webhook, state, count, attempts, delivered, webhook_error, created = row
    if owner != tenant:
        raise APIError(404, f"No job or deferred request with id '{job_id}'.", code="not_found")
    lines = await asyncio.to_thread(store.lines_where, "job_id = ? ORDER BY seq", (job_id,))
    rendered = [_rendered(line, orjson.loads(line.who)) for line in lines]
    counts = {"total": count, "succeeded": sum(r["status"] == "succeeded" for r in rendered),
              "failed": sum(r["status"] == "failed" for r in rendered),
              "pending": sum(r["status"] == "pending" for r in rendered)}
    out: dict[str, Any] = {"id": job_id, "object": "scrimp.job", "status": "completed" if state != "open" else
                           "in_progress", "created_at": int(created), "request_counts": counts}
    if webhook:
        out["webhook"] = {"url": webhook, "attempts": attempts, "delivered_at": delivered, "last_error": webhook_error}
    if results:
        out["results"] = rendered
    return out


async def finish_and_deliver(lane: BatchStage) -> None:
    """Close the jobs whose lines are all done; post the due webhooks (one attempt each per tick)."""
    assert lane.store is not None
    store = lane.store
    now = time.time()
    await asyncio.to_thread(store.db.execute,
                            "UPDATE batch_jobs SET state = 'done', updated = ?, next_attempt = ? WHERE state = 'open' "
                            "AND NOT EXISTS (SELECT 1 FROM batch_lines WHERE batch_lines.job_id = batch_jobs.id AND "
                            "(batch_lines.state <> 'done' OR batch_lines.recorded = 0))", (now, now))
    due = await asyncio.to_thread(store.db.execute,
                                  "SELECT id, tenant, webhook, attempts FROM batch_jobs WHERE state = 'done' AND "
                                  "webhook IS NOT NULL AND delivered IS NULL AND next_attempt <= ?", (now,), "all")
    for job_id, tenant, url, attempts in due:
        body = orjson.dumps(await view(lane, job_id, tenant))
        error = None
        try:
            async with lane.client.session().post(
                    url, data=body, timeout=_timeout(lane.options.webhook_timeout_s),
                    headers={"content-type": "application/json", "x-scrimp-job-id": job_id,
                             "x-scrimp-signature": webhooks.signature(lane.options.webhook_secret or "", body)}) as resp:
                await resp.read()
                if not 200 <= resp.status < 300:
                    error = f"HTTP {resp.status}"
        except Exception as exc:  # noqa: BLE001 - any failure to deliver is retried
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts += 1
        if error is None:
            await asyncio.to_thread(store.db.execute, "UPDATE batch_jobs SET delivered = ?, attempts = ?, "
                                    "webhook_error = NULL WHERE id = ?", (time.time(), attempts, job_id))
            continue
        gave_up = attempts >= lane.options.webhook_attempts
        later = now + lane.options.webhook_backoff_s * 2 ** (attempts - 1)
        await asyncio.to_thread(store.db.execute, "UPDATE batch_jobs SET attempts = ?, next_attempt = ?, "
                                "webhook_error = ?, state = ? WHERE id = ?",
                                (attempts, later, error, "webhook_failed" if gave_up else "done", job_id))


def _timeout(seconds: float) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)
