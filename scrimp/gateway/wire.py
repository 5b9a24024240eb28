"""The client APIs the gateway speaks, each a `Wire`: how a request body becomes the canonical request, and how
the canonical answer, whole or streamed, goes back to the client. `handle_chat` runs the same pipeline for
every wire; a wire only translates (the Responses wire also reads and writes its stored responses)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse

from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.pipeline import Call, StreamEvent, new_request_id


def request_id() -> str:
    return new_request_id()


def error_response(exc: APIError, shape: str, rid: str) -> JSONResponse:
    """An error in the API's shape ("openai" or "anthropic"), with the request id."""
    headers = dict(exc.headers)
    headers["x-scrimp-request-id"] = rid
    return JSONResponse(exc.body(shape), status_code=exc.status if exc.status >= 400 else 502, headers=headers)


class Wire:
    """One client API around the pipeline."""

    shape = "openai"  # the shape of its errors

    async def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
        raise NotImplementedError

    async def render(self, resp: ChatResponse, call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, events: AsyncIterator[StreamEvent], call: Call, model: str) -> AsyncIterator[bytes]:
        raise NotImplementedError


async def sse(events: AsyncIterator[StreamEvent], write: Callable[[StreamEvent], bytes],
              failed: Callable[[APIError], bytes]) -> AsyncIterator[bytes]:
    """Events through a writer; a failure mid-stream is told to the client in its format, then the stream ends."""
    try:
        async for event in events:
            chunk = write(event)
            if chunk:
                yield chunk
    except APIError as exc:
        yield failed(exc)
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]


class OpenAIWire(Wire):
    """Chat Completions."""

    shape = "openai"

    async def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
        return openai_fmt.parse_request(body)

    async def render(self, resp: ChatResponse, call: Call) -> dict[str, Any]:
        return openai_fmt.render_response(resp)

    def stream(self, events: AsyncIterator[StreamEvent], call: Call, model: str) -> AsyncIterator[bytes]:
        writer = openai_fmt.StreamWriter(model, call.request.include_usage, "chatcmpl-" + call.request_id[4:])
        return sse(events, writer.event, lambda exc: b"data: " + orjson.dumps(exc.body("openai")) + b"\n\n")


class AnthropicWire(Wire):
    """Messages."""

    shape = "anthropic"

    async def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
        return anthropic_fmt.parse_request(body)

    async def render(self, resp: ChatResponse, call: Call) -> dict[str, Any]:
        return anthropic_fmt.render_response(resp)

    def stream(self, events: AsyncIterator[StreamEvent], call: Call, model: str) -> AsyncIterator[bytes]:
        writer = anthropic_fmt.StreamWriter(model)
        return sse(events, writer.event,
                   lambda exc: b"event: error\ndata: " + orjson.dumps(exc.body("anthropic")) + b"\n\n")


OPENAI = OpenAIWire()
ANTHROPIC = AnthropicWire()
