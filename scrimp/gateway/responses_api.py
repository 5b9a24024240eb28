"""The OpenAI Responses API: `POST /v1/responses` through the same pipeline as every chat call (the Responses
wire), and the stored responses: `GET` / `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

A response is stored (unless `store: false`) under the caller's tenant before it is returned; a
`previous_response_id` continues a stored response of the same tenant only (another tenant's is a 404)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp.attribution import plain_headers, tenant_of
from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.formats import responses as fmt
from scrimp.formats.errors import APIError
from scrimp.formats.responses_stream import StreamWriter
from scrimp.gateway.wire import Wire, error_response, request_id
from scrimp.pipeline import Call, StreamEvent
from scrimp.responses_store import ResponsesStore, StoredResponse


def not_found(response_id: str, param: str | None = None) -> APIError:
    if param == "previous_response_id":
        return APIError(404, f"Previous response with id '{response_id}' not found.", param=param,
                        code="previous_response_not_found")
    return APIError(404, f"Response with id '{response_id}' not found.")


class ResponsesWire(Wire):
    """One Responses request: parsed (with its stored history), rendered, streamed and stored."""

    shape = "openai"

    def __init__(self, store: ResponsesStore) -> None:
        self.store = store
        self.created_at = time.time()
        self.parsed: fmt.ResponsesRequest | None = None
        self.context: list[dict[str, Any]] = []  # the whole input context: history, then this input

    async def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
        parsed = self.parsed = fmt.parse_request(body)
        self.context = parsed.items
        if parsed.previous_response_id is None:
            return parsed.request
        tenant = tenant_of(headers, parsed.request.metadata)
        previous = await self.store.get(tenant, parsed.previous_response_id)
        if previous is None:
            raise not_found(parsed.previous_response_id, "previous_response_id")
        history = previous.history()
        self.context = history + parsed.items
        return parsed.continued(history)

    def _id(self, call: Call) -> str:
        return "resp_" + call.request_id.removeprefix("req_")

    def _base(self, call: Call, model: str) -> dict[str, Any]:
        assert self.parsed is not None
        return fmt.skeleton(self.parsed, self._id(call), self.created_at, model)

    async def _save(self, call: Call, response: dict[str, Any]) -> None:
        assert self.parsed is not None
        if self.parsed.store:
            await self.store.save(StoredResponse(response["id"], call.attribution.tenant, self.created_at,
                                                 response, self.context))

    async def render(self, resp: ChatResponse, call: Call) -> dict[str, Any]:
        response = fmt.finished(self._base(call, resp.model or call.target_model), resp, fmt.output_items(resp),
                                time.time())
        await self._save(call, response)
        return response

    async def stream(self, events: AsyncIterator[StreamEvent], call: Call, model: str) -> AsyncIterator[bytes]:
        writer = StreamWriter(self._base(call, model))
        yield writer.start()
        try:
            async for event in events:
                if event.kind != "done":
                    chunk = writer.event(event)
                    if chunk:
                        yield chunk
                elif event.response is not None:
                    closing = writer.close_items(event.response)
                    response = writer.final(event.response, time.time())
                    await self._save(call, response)  # stored before the client hears it is complete
                    yield closing + writer.finish(response)
        except APIError as exc:
            yield writer.fail(exc)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]


def _tenant(request: Request) -> str:
    return tenant_of(plain_headers(request.scope["headers"]))


def _stored(handler: Callable[[Request, ResponsesStore, str, str], Awaitable[Response]]) \
        -> Callable[[Request], Awaitable[Response]]:
    """A handler of one stored response: errors in OpenAI's shape, the request id on every answer."""

    async def endpoint(request: Request) -> Response:
        rid = request_id()
        try:
            response = await handler(request, request.app.state.gateway.responses, _tenant(request),
                                     request.path_params["response_id"])
        except APIError as exc:
            return error_response(exc, "openai", rid)
        response.headers["x-scrimp-request-id"] = rid
        return response

    return endpoint


async def _retrieve(request: Request, store: ResponsesStore, tenant: str, response_id: str) -> Response:
    if request.query_params.get("stream") in ("true", "1"):
        raise APIError(400, "Streaming a stored response again is not supported by scrimp.", param="stream",
                       code="unsupported_parameter")
    rec = await store.get(tenant, response_id)
    if rec is None:
        raise not_found(response_id)
    return JSONResponse(rec.response)


async def _delete(request: Request, store: ResponsesStore, tenant: str, response_id: str) -> Response:
    if not await store.delete(tenant, response_id):
        raise not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


async def _input_items(request: Request, store: ResponsesStore, tenant: str, response_id: str) -> Response:
    """The items the response was generated from (earlier turns included), newest first unless order=asc."""
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, f"Invalid value for 'order': {order!r}. Supported values are: 'asc' and 'desc'.",
                       param="order")
    limit_raw = query.get("limit", "20")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
        raise APIError(400, f"Invalid 'limit': expected an integer between 1 and 100, got {limit_raw!r}.",
                       param="limit")
    rec = await store.get(tenant, response_id)
    if rec is None:
        raise not_found(response_id)
    items = rec.input_items if order == "asc" else list(reversed(rec.input_items))
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:int(limit_raw)]
    return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)})


def routes(handle_chat: Callable[[Request, Wire], Awaitable[Response]]) -> list[Route]:
    """The Responses API's routes; `handle_chat` runs a request through the pipeline with a wire."""

    async def create(request: Request) -> Response:
        return await handle_chat(request, ResponsesWire(request.app.state.gateway.responses))

    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/{response_id}", _stored(_retrieve), methods=["GET"]),
        Route("/v1/responses/{response_id}", _stored(_delete), methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", _stored(_input_items), methods=["GET"]),
    ]
