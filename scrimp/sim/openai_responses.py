"""OpenAI wire API: the Responses API.

`POST /v1/responses` (streaming too), `GET /v1/responses/{id}` (`?stream=true` replays its events),
`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`. A request is checked and translated into
the chat path's request (`responses_input.plan`) and answered by `openai_api.run_completion`, so faults, rate
limits, latency, token counts, the prompt cache, replies and counters are the chat endpoint's.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scrimp.sim import engine, web_search
from scrimp.sim.app import SimState, check_key, read_json, state_of
from scrimp.sim.config import ModelConfig
from scrimp.sim.errors import SimError, invalid
from scrimp.sim.openai_api import _pieces, run_completion
from scrimp.sim.responses_input import Plan, new_id, plan, renamed, store_of
from scrimp.tokens import count_tokens


def output_items(model: ModelConfig, gen: engine.Generation, include: list[str],
                 search: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if model.reasoning:  # the reasoning itself is hidden; a stateless client may ask for it, encrypted, to send back
        out.append({"id": new_id("rs_"), "type": "reasoning", "summary": []})
        if "reasoning.encrypted_content" in include:
            out[-1]["encrypted_content"] = base64.b64encode(new_id("sim:").encode()).decode()
    if search is not None and not gen.tool_calls:  # a hosted web search, made before the answer
        out.append(web_search.call_item(new_id("ws_"), search))
    for call in gen.tool_calls:
        out.append({"id": new_id("fc_"), "type": "function_call", "status": "completed", "call_id": call["id"],
                    "name": call["name"], "arguments": orjson.dumps(call["arguments"]).decode()})
    # A reasoning model whose reasoning used the whole max_output_tokens has no message to show.
    if not gen.tool_calls and not (model.reasoning and not gen.text and gen.finish == "length"):
        out.append({"id": new_id("msg_"), "type": "message", "role": "assistant",
                    "status": "incomplete" if gen.finish == "length" else "completed",
                    "content": [{"type": "output_text", "text": gen.text, "annotations": [], "logprobs": []}]})
        if search is not None:
            out[-1] = web_search.cite(out[-1], search)
    return out


def usage_of(chat: dict[str, Any]) -> dict[str, Any]:
    """The chat path's usage as the Responses API reports it (cached tokens are part of input_tokens,
    reasoning tokens part of output_tokens)."""
    return {"input_tokens": chat["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": chat["prompt_tokens_details"]["cached_tokens"],
                                     "cache_write_tokens": 0},
            "output_tokens": chat["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": chat["completion_tokens_details"]["reasoning_tokens"]},
            "total_tokens": chat["total_tokens"]}


def response_body(rid: str, model: ModelConfig, p: Plan, gen: engine.Generation, usage: dict[str, Any],
                  created: int) -> dict[str, Any]:
    incomplete = gen.finish == "length"
    return {"id": rid, "object": "response", "created_at": created,
            "status": "incomplete" if incomplete else "completed", "background": False,
            "completed_at": None if incomplete else int(time.time()), "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": model.name, "output": output_items(model, gen, p.include, p.search), **p.echo,
            "service_tier": "default",
            "usage": usage_of(usage)}


async def create_response(request: Request) -> Response:
    state = state_of(request)
    state.counters.hit("responses")
    body: dict[str, Any] = {}
    try:
        check_key(request, "openai")
        body = await read_json(request, "openai")
        model = state.model(body.get("model"))
        delay = state.faults.before_call(model)
        response, gen, out = run_response(state, body)
    except SimError as exc:
        state.record_error(body.get("model"))
        return exc.openai()
    if body.get("stream"):
        return StreamingResponse(stream_events(response, Pacing(state, model, gen, delay)),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})
    await asyncio.sleep(delay + (model.ttft_ms + model.per_token_ms * out) / 1000.0)
    return JSONResponse(response)


def run_response(state: SimState, body: dict[str, Any]) -> tuple[dict[str, Any], engine.Generation, int]:
    """Validate, answer, account and store one response: (the Response object, its generation, output tokens).
    Shared by the endpoint and the Batch API."""
    model = state.model(body.get("model"))
    p = plan(state, model, body)
    try:
        usage, gens, out = run_completion(state, p.chat)
    except SimError as exc:
        raise renamed(exc) from None
    response = response_body(new_id("resp_"), model, p, gens[0], usage, int(time.time()))
    if any(item["type"] == "web_search_call" for item in response["output"]):
        state.counters.hit("responses.web_search")
    if response["store"]:
        store_of(state).put(response, p.context, p.new)
    return response, gens[0], out


class Pacing:
    """A live stream's timing and faults (a replayed stream has none)."""

    def __init__(self, state: SimState, model: ModelConfig, gen: engine.Generation, delay: float) -> None:
        self.delay, self.ttft = delay, model.ttft_ms / 1000.0
        self.per_token = model.per_token_ms / 1000.0
        self.reasoning = gen.reasoning_tokens
        self.drop = state.faults.drop_stream(model)
        self.stall = state.faults.stall_stream(model)


async def stream_events(response: dict[str, Any], pace: Pacing | None, after: int = -1) -> AsyncIterator[bytes]:
    """The events OpenAI streams for a response, in its order, each with its sequence_number."""
    seq = -1

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        if seq <= after:
            return b""
        return (b"event: " + kind.encode() + b"\ndata: "
                + orjson.dumps({"type": kind, "sequence_number": seq, **fields}) + b"\n\n")

    if pace:
        await asyncio.sleep(pace.delay)
    pending = dict(response, status="in_progress", output=[], usage=None, incomplete_details=None,
                   completed_at=None)
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    if pace:
        await asyncio.sleep(pace.ttft)
    for index, item in enumerate(response["output"]):
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "web_search_call":
            yield event("response.output_item.added", output_index=index,
                        item=dict(item, status="in_progress", action={"type": "search"}))
            for step in ("in_progress", "searching", "completed"):
                yield event(f"response.web_search_call.{step}", **ids)
        elif item["type"] == "reasoning":
            yield event("response.output_item.added", output_index=index, item=item)
            if pace and pace.per_token and pace.reasoning:  # thinking before the first visible token
                await asyncio.sleep(pace.per_token * pace.reasoning)
        elif item["type"] == "function_call":
            yield event("response.output_item.added", output_index=index,
                        item=dict(item, arguments="", status="in_progress"))
            args = item["arguments"]
            for k in range(0, len(args), 16):
                yield event("response.function_call_arguments.delta", **ids, delta=args[k:k + 16])
            yield event("response.function_call_arguments.done", **ids, arguments=args)
        else:
            part = item["content"][0]
            yield event("response.output_item.added", output_index=index,
                        item=dict(item, status="in_progress", content=[]))
            yield event("response.content_part.added", **ids, content_index=0,
                        part=dict(part, text="", annotations=[]))
            pieces = [piece for piece in _pieces(part["text"]) if piece]
            for n, piece in enumerate(pieces):
                if pace and pace.drop and n >= len(pieces) // 2:
                    # A dropped connection: the client sees the stream end without a final event.
                    raise ConnectionResetError("simulated dropped stream")
                if pace and pace.stall and n >= len(pieces) // 2:  # silent for a while, the connection kept open
                    await asyncio.sleep(pace.stall)
                    pace.stall = 0.0
                if pace and pace.per_token:
                    await asyncio.sleep(pace.per_token * count_tokens(piece))
                yield event("response.output_text.delta", **ids, content_index=0, delta=piece, logprobs=[])
            for n, annotation in enumerate(part["annotations"]):
                yield event("response.output_text.annotation.added", **ids, content_index=0, annotation_index=n,
                            annotation=annotation)
            yield event("response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[])
            yield event("response.content_part.done", **ids, content_index=0, part=part)
        yield event("response.output_item.done", output_index=index, item=item)
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield event(final, response=response)


def _not_found(rid: str) -> Response:
    return SimError(404, f"Response with id '{rid}' not found.", param="response_id").openai()


def _stored(request: Request, endpoint: str) -> tuple[str, dict[str, Any] | None]:
    state = state_of(request)
    state.counters.hit(endpoint)
    check_key(request, "openai")
    rid = request.path_params["response_id"]
    return rid, store_of(state).get(rid)


async def get_response(request: Request) -> Response:
    try:
        rid, entry = _stored(request, "responses.retrieve")
        if entry is None:
            return _not_found(rid)
        query = request.query_params
        if query.get("stream", "").lower() != "true":
            return JSONResponse(entry["response"])
        after = query.get("starting_after", "-1")
        if not after.lstrip("-").isdigit():
            raise invalid("Invalid 'starting_after': expected an integer.", "starting_after")
    except SimError as exc:
        return exc.openai()
    return StreamingResponse(stream_events(entry["response"], None, int(after)), media_type="text/event-stream")


async def delete_response(request: Request) -> Response:
    try:
        rid, entry = _stored(request, "responses.delete")
    except SimError as exc:
        return exc.openai()
    if entry is None:
        return _not_found(rid)
    store_of(state_of(request)).delete(rid)
    return JSONResponse({"id": rid, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    """The items the model saw after the instructions: earlier turns of a previous_response_id chain too."""
    try:
        rid, entry = _stored(request, "responses.input_items")
        if entry is None:
            return _not_found(rid)
        query = request.query_params
        limit = query.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid("Invalid 'order': expected 'asc' or 'desc'.", "order")
    except SimError as exc:
        return exc.openai()
    items = list(entry["input"]) if order == "asc" else entry["input"][::-1]
    after = query.get("after")
    if after:
        at = next((i for i, item in enumerate(items) if item["id"] == after), None)
        items = items[at + 1:] if at is not None else []
    page = items[: int(limit)]
    return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)})


def routes() -> list[Route]:
    return [
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    ]
