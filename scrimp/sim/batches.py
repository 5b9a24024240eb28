"""Both providers' Batch APIs: OpenAI Files + Batches, Anthropic Message Batches.

Jobs run in the background after the configured delay and answer each request exactly as the per-request
endpoint would (the same `run_completion` / `run_message`), so batched results equal per-request ones.
Jobs live in memory: the simulator is a test double, not a store. Partial failures are configurable
(`batch_error_rate`, `batch_expire_rate`: a share of lines errored or expired), and every line a batch runs is
counted under the endpoint `batch` in /sim/counters (batch pricing is half the per-request price).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp.sim import anthropic_api, openai_api, openai_responses
from scrimp.sim.app import SimState, check_key, read_json, state_of
from scrimp.sim.errors import SimError, invalid

OPENAI_ENDPOINTS = {"/v1/chat/completions", "/v1/responses", "/v1/embeddings"}


@dataclass
class BatchStore:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    openai: dict[str, dict[str, Any]] = field(default_factory=dict)
    anthropic: dict[str, dict[str, Any]] = field(default_factory=dict)
    anthropic_results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.__init__()  # type: ignore[misc]

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def store_of(state: SimState) -> BatchStore:
    store = state.extras.get("batches")
    if store is None:
        store = state.extras["batches"] = BatchStore()
    return store


def _window_seconds(window: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", window)
    if not m:
        raise invalid("completion_window: expected a duration such as '24h'.", "completion_window")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def _fate(state: SimState, custom_id: str) -> str:
    """A line's injected fate: "ok", "errored" (batch_error_rate) or "expired" (batch_expire_rate), drawn from the
    seed and the line's custom_id, so the same line meets the same fate in every run."""
    cfg = state.config
    if not (cfg.batch_error_rate or cfg.batch_expire_rate):
        return "ok"
    roll = random.Random(f"{cfg.seed}:{custom_id}").random()
    if roll < cfg.batch_error_rate:
        return "errored"
    return "expired" if roll < cfg.batch_error_rate + cfg.batch_expire_rate else "ok"


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    items = sorted(items, key=lambda b: b["_seq"], reverse=True)  # newest first, as both APIs list
    if after:
        ids = [b["id"] for b in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return items[:limit], len(items) > limit


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


# ---- OpenAI Files ---------------------------------------------------------------------------------


async def upload_file(request: Request) -> Response:
    state = state_of(request)
    try:
        check_key(request, "openai")
        form = await request.form()
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in ("batch", "assistants", "fine-tune", "user_data", "evals"):
            raise invalid("Invalid value for 'purpose'.", "purpose")
        if upload is None or isinstance(upload, str):
            raise invalid("Missing required parameter: 'file'.", "file")
        data = await upload.read()
    except SimError as exc:
        return exc.openai()
    file_id = "file-" + uuid.uuid4().hex[:24]
    store = store_of(state)
    store.contents[file_id] = data
    store.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                            "filename": upload.filename or "upload.jsonl", "purpose": purpose,
                            "status": "processed", "expires_at": None, "status_details": None}
    return JSONResponse(store.files[file_id])


def _file(state: SimState, file_id: str) -> dict[str, Any]:
    meta = store_of(state).files.get(file_id)
    if meta is None:
        raise SimError(404, f"No such File object: {file_id}", param="id")
    return meta


async def get_file(request: Request) -> Response:
    try:
        return JSONResponse(_file(state_of(request), request.path_params["file_id"]))
    except SimError as exc:
        return exc.openai()


async def file_content(request: Request) -> Response:
    state = state_of(request)
    try:
        meta = _file(state, request.path_params["file_id"])
    except SimError as exc:
        return exc.openai()
    return Response(store_of(state).contents[meta["id"]], media_type="application/jsonl")


def _save_output(state: SimState, lines: list[dict[str, Any]], name: str) -> str | None:
    if not lines:
        return None
    file_id = "file-" + uuid.uuid4().hex[:24]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    store = store_of(state)
    store.contents[file_id] = data
    store.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                            "filename": name, "purpose": "batch_output", "status": "processed",
                            "expires_at": None, "status_details": None}
    return file_id


# ---- OpenAI Batches -------------------------------------------------------------------------------


def _parse_input(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Lines of the input file, or the validation errors that fail the batch."""
    lines, errors, seen = [], [], set()
    for n, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            errors.append({"code": "invalid_json_line", "line": n, "message": "This line is not valid JSON.",
                           "param": None})
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            errors.append({"code": "missing_required_parameter", "line": n, "param": "custom_id",
                           "message": "Missing required parameter: 'custom_id'."})
        elif line["custom_id"] in seen:
            errors.append({"code": "duplicate_custom_id", "line": n, "param": "custom_id",
                           "message": f"The custom_id {line['custom_id']!r} is duplicated."})
        elif line.get("url") != endpoint or line.get("method") != "POST" or not isinstance(line.get("body"), dict):
            errors.append({"code": "invalid_request", "line": n, "param": "url",
                           "message": f"Each line must be a POST to {endpoint} with a 'body' object."})
        else:
            seen.add(line["custom_id"])
            lines.append(line)
    if not lines and not errors:
        errors.append({"code": "empty_file", "line": None, "param": None, "message": "The input file is empty."})
    return lines, errors


async def create_batch(request: Request) -> Response:
    state = state_of(request)
    try:
        check_key(request, "openai")
        body = await read_json(request, "openai")
        endpoint = body.get("endpoint")
        if endpoint not in OPENAI_ENDPOINTS:
            raise invalid(f"Invalid 'endpoint': must be one of {sorted(OPENAI_ENDPOINTS)}.", "endpoint")
        window = body.get("completion_window", "24h")
        window_s = _window_seconds(window) if isinstance(window, str) else _window_seconds("")
        meta = _file(state, body.get("input_file_id") or "")
        if meta["purpose"] != "batch":
            raise invalid("The input file must have purpose 'batch'.", "input_file_id")
    except SimError as exc:
        return exc.openai()
    store = store_of(state)
    now = int(time.time())
    batch_id = "batch_" + uuid.uuid4().hex[:24]
    batch = {"id": batch_id, "object": "batch", "endpoint": endpoint, "errors": None,
             "input_file_id": meta["id"], "completion_window": window, "status": "validating",
             "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
             "expires_at": now + int(window_s), "finalizing_at": None, "completed_at": None, "failed_at": None,
             "expired_at": None, "cancelling_at": None, "cancelled_at": None,
             "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
             "_seq": len(store.openai)}
    store.openai[batch_id] = batch
    store.spawn(_run_openai_batch(state, batch, window_s))
    return JSONResponse(_public(batch))


async def _run_openai_batch(state: SimState, batch: dict[str, Any], window_s: float) -> None:
    store = store_of(state)
    lines, errors = _parse_input(store.contents[batch["input_file_id"]], batch["endpoint"])
    if errors:
        batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": errors})
        return
    batch["request_counts"]["total"] = len(lines)
    if batch["status"] == "validating":
        batch.update(status="in_progress", in_progress_at=int(time.time()))
    delay = state.config.batch_delay_s
    await asyncio.sleep(min(delay, window_s))
    out, err = [], []
    cancelled = batch["status"] == "cancelling"
    expired = delay > window_s
    for line in lines if not (cancelled or expired) else []:
        state.counters.hit("batch")
        fate = _fate(state, line["custom_id"])
        if fate == "expired":
            err.append({"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line["custom_id"], "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before "
                                                                      "the completion window expired."}})
            continue
        try:
            if fate == "errored":
                raise SimError(500, "The server had an error processing this batch request (injected fault).")
            if batch["endpoint"] == "/v1/chat/completions":
                usage, gens, _ = openai_api.run_completion(state, line["body"])
                model = line["body"]["model"]
                result = openai_api.completion_body(model, gens, usage, "chatcmpl-" + uuid.uuid4().hex[:24])
            elif batch["endpoint"] == "/v1/responses":
                result = openai_responses.run_response(state, dict(line["body"], stream=False))[0]
            else:
                result = _embedding_body(state, line["body"])
            out.append({"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": result},
                        "error": None})
        except SimError as exc:
            err.append({"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line["custom_id"],
                        "response": {"status_code": exc.status, "request_id": uuid.uuid4().hex,
                                     "body": orjson.loads(exc.openai().body)}, "error": None})
    if expired:
        err = [{"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": ln["custom_id"], "response": None,
                "error": {"code": "batch_expired", "message": "This request could not be executed before the "
                                                               "completion window expired."}} for ln in lines]
    batch["finalizing_at"] = int(time.time())
    batch.update(output_file_id=_save_output(state, out, f"{batch['id']}_output.jsonl"),
                 error_file_id=_save_output(state, err, f"{batch['id']}_error.jsonl"))
    batch["request_counts"].update(completed=len(out), failed=len(err))
    now = int(time.time())
    if cancelled:
        batch.update(status="cancelled", cancelled_at=now)
    elif expired:
        batch.update(status="expired", expired_at=now)
    else:
        batch.update(status="completed", completed_at=now)


def _embedding_body(state: SimState, body: dict[str, Any]) -> dict[str, Any]:
    from scrimp.sim import engine

    model = state.model(body.get("model"), kind="embedding")
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise invalid("Invalid 'input'.", "input")
    from scrimp.tokens import count_tokens

    n = sum(count_tokens(t) for t in texts)
    state.counters.record(model.name, input_tokens=n)
    return {"object": "list", "model": model.name, "usage": {"prompt_tokens": n, "total_tokens": n},
            "data": [{"object": "embedding", "index": i, "embedding": engine.embed(t, model.dimensions)}
                     for i, t in enumerate(texts)]}


def _openai_batch(state: SimState, batch_id: str) -> dict[str, Any]:
    batch = store_of(state).openai.get(batch_id)
    if batch is None:
        raise SimError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


async def get_batch(request: Request) -> Response:
    try:
        return JSONResponse(_public(_openai_batch(state_of(request), request.path_params["batch_id"])))
    except SimError as exc:
        return exc.openai()


async def cancel_batch(request: Request) -> Response:
    try:
        batch = _openai_batch(state_of(request), request.path_params["batch_id"])
        if batch["status"] not in ("validating", "in_progress"):
            raise SimError(409, f"Cannot cancel a batch with status '{batch['status']}'.")
    except SimError as exc:
        return exc.openai()
    batch.update(status="cancelling", cancelling_at=int(time.time()))
    return JSONResponse(_public(batch))


async def list_batches(request: Request) -> Response:
    state = state_of(request)
    limit = int(request.query_params.get("limit", 20))
    page, more = _page(list(store_of(state).openai.values()), request.query_params.get("after"), limit)
    data = [_public(b) for b in page]
    return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": more})


# ---- Anthropic Message Batches ------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


async def create_message_batch(request: Request) -> Response:
    state = state_of(request)
    try:
        check_key(request, "anthropic")
        body = await read_json(request, "anthropic")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise invalid("requests: Field required (a non-empty list)")
        seen = set()
        for i, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                raise invalid(f"requests.{i}.custom_id: Field required")
            if item["custom_id"] in seen:
                raise invalid(f"requests.{i}.custom_id: duplicate custom_id {item['custom_id']!r}")
            seen.add(item["custom_id"])
            if not isinstance(item.get("params"), dict):
                raise invalid(f"requests.{i}.params: Field required")
    except SimError as exc:
        return exc.anthropic()
    store = store_of(state)
    now = time.time()
    batch_id = "msgbatch_" + uuid.uuid4().hex[:24]
    batch = {"id": batch_id, "type": "message_batch", "processing_status": "in_progress",
             "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0,
                                "expired": 0},
             "ended_at": None, "created_at": _iso(now), "expires_at": _iso(now + 86400),
             "cancel_initiated_at": None, "archived_at": None, "results_url": None,
             "_seq": len(store.anthropic), "_base": str(request.base_url).rstrip("/")}
    store.anthropic[batch_id] = batch
    store.spawn(_run_anthropic_batch(state, batch, requests))
    return JSONResponse(_public(batch))


async def _run_anthropic_batch(state: SimState, batch: dict[str, Any], requests: list[dict[str, Any]]) -> None:
    await asyncio.sleep(state.config.batch_delay_s)
    results = []
    counts = batch["request_counts"]
    for item in requests:
        if batch["processing_status"] == "canceling":
            results.append({"custom_id": item["custom_id"], "result": {"type": "canceled"}})
            counts["canceled"] += 1
            continue
        state.counters.hit("batch")
        fate = _fate(state, item["custom_id"])
        if fate == "expired":
            results.append({"custom_id": item["custom_id"], "result": {"type": "expired"}})
            counts["expired"] += 1
            continue
        try:
            if fate == "errored":
                raise SimError(500, "Internal server error processing this batch request (injected fault).")
            usage, gen = anthropic_api.run_message(state, item["params"])
            message = anthropic_api.message_body(item["params"]["model"], gen, usage, "msg_" + uuid.uuid4().hex[:24])
            results.append({"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}})
            counts["succeeded"] += 1
        except SimError as exc:
            results.append({"custom_id": item["custom_id"], "result": {
                "type": "errored", "error": orjson.loads(exc.anthropic().body)}})
            counts["errored"] += 1
    counts["processing"] = 0
    store_of(state).anthropic_results[batch["id"]] = results
    batch.update(processing_status="ended", ended_at=_iso(time.time()),
                 results_url=f"{batch['_base']}/v1/messages/batches/{batch['id']}/results")


def _anthropic_batch(state: SimState, batch_id: str) -> dict[str, Any]:
    batch = store_of(state).anthropic.get(batch_id)
    if batch is None:
        raise SimError(404, f"message batch {batch_id} not found")
    return batch


async def get_message_batch(request: Request) -> Response:
    try:
        return JSONResponse(_public(_anthropic_batch(state_of(request), request.path_params["batch_id"])))
    except SimError as exc:
        return exc.anthropic()


async def cancel_message_batch(request: Request) -> Response:
    try:
        batch = _anthropic_batch(state_of(request), request.path_params["batch_id"])
    except SimError as exc:
        return exc.anthropic()
    if batch["processing_status"] == "in_progress":
        batch.update(processing_status="canceling", cancel_initiated_at=_iso(time.time()))
    return JSONResponse(_public(batch))


async def message_batch_results(request: Request) -> Response:
    state = state_of(request)
    try:
        batch = _anthropic_batch(state, request.path_params["batch_id"])
        if batch["processing_status"] != "ended":
            raise invalid(f"Batch {batch['id']} is still processing; results are available once it has ended.")
    except SimError as exc:
        return exc.anthropic()
    lines = store_of(state).anthropic_results[batch["id"]]
    return Response(b"".join(orjson.dumps(line) + b"\n" for line in lines), media_type="application/x-jsonl")


async def list_message_batches(request: Request) -> Response:
    state = state_of(request)
    limit = int(request.query_params.get("limit", 20))
    page, more = _page(list(store_of(state).anthropic.values()), request.query_params.get("after_id"), limit)
    data = [_public(b) for b in page]
    return JSONResponse({"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None})


def routes() -> list[Route]:
    return [
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files/{file_id}", get_file, methods=["GET"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches", create_message_batch, methods=["POST"]),
        Route("/v1/messages/batches", list_message_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", get_message_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", cancel_message_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", message_batch_results, methods=["GET"]),
    ]
