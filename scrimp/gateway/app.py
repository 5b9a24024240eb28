"""The gateway's HTTP surface: parse at the edge, run the pipeline, render in the client's format."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scrimp.attribution import attribute, caller_key, client_key, hints_of, plain_headers
from scrimp.auth import Auth
from scrimp.canonical import ChatResponse, Usage
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.gateway import responses_api
from scrimp.gateway.config import GatewayConfig
from scrimp.gateway.stages import build_stages
from scrimp.gateway.upstream import Upstream
from scrimp.gateway.wire import ANTHROPIC, OPENAI, Wire, error_response, request_id
from scrimp.ledger.stage import record_call
from scrimp.metrics import endpoint as metrics_endpoint
from scrimp.pipeline import Call, Pipeline, Reply, collect, replay
from scrimp.responses_store import ResponsesStore, open_responses_store
from scrimp.tokens import count_tokens

log = logging.getLogger("scrimp.gateway")


class Gateway:
    """The pipeline and its parts; one per process."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.upstream = Upstream(config)
        self.stages, self.ctx = build_stages(config, self.upstream)
        self.pipeline = Pipeline(self.stages, self.upstream)
        self.ctx.provide_pipeline(self.pipeline)  # stages that start calls of their own (the batch lane's jobs)
        self.responses: ResponsesStore = open_responses_store(self.ctx.ledger)  # stored Responses API answers
        self.auth = Auth(config.auth, self.ctx.ledger) if config.auth is not None else None  # keys, tenancy

    @property
    def ledger(self) -> Any:
        """The ledger store, or None without a ledger stage."""
        return self.ctx.ledger

    async def start(self) -> None:
        for stage in self.stages:
            await stage.start()
        await self.responses.start()
        if self.auth is not None:
            await self.auth.start()

    async def close(self) -> None:
        # every part is closed even if one fails: the ledger, closed last, must still be flushed
        for part in [*([self.auth] if self.auth else []), self.responses, *reversed(self.stages)]:
            try:
                await part.close()
            except Exception:
                log.exception("%s failed to close", getattr(part, "name", type(part).__name__))
        await self.upstream.close()


_request_id = request_id
_error = error_response


def _shape_of(request: Request) -> str:
    """The API a request speaks, for errors outside a known endpoint: Anthropic's for /v1/messages* or an
    `anthropic-version` header, OpenAI's otherwise."""
    if request.url.path.startswith("/v1/messages") or request.headers.get("anthropic-version"):
        return "anthropic"
    return "openai"


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown path 404, wrong method 405) in the caller's API shape, not plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    fmt = _shape_of(request)
    where = f"{request.method} {request.url.path}"
    if status == 404:
        message = f"Invalid URL ({where})" if fmt == "openai" else f"Not Found: no endpoint {where}"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        message = f"Method Not Allowed: {where} (allowed: {allowed})"
    else:
        message = str(getattr(exc, "detail", "") or exc)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return _error(APIError(status, message, headers=headers), fmt, _request_id())


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: a 500 in the caller's API shape (the traceback goes to the log, not the client)."""
    request_id = _request_id()
    log.error("request %s failed: %s: %s", request_id, type(exc).__name__, exc)
    return _error(APIError(500, f"scrimp failed to handle this request ({type(exc).__name__}); request id "
                                f"{request_id}."), _shape_of(request), request_id)


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}


def _headers(call: Call, reply: Reply) -> dict[str, str]:
    headers = {"x-scrimp-request-id": call.request_id, "x-scrimp-cache": str(call.decisions.get("cache", "miss")),
               "x-scrimp-model": reply.served_model or call.target_model}
    if call.cost_usd is not None:
        headers["x-scrimp-cost-usd"] = f"{call.cost_usd:.8f}"
        headers["x-scrimp-saved-usd"] = f"{(call.baseline_usd or 0) - call.cost_usd:.8f}"
    if "route" in call.decisions:
        headers["x-scrimp-route"] = str(call.decisions["route"])
    headers.update(reply.headers)
    return headers


def _is_json(content_type: str | None) -> bool:
    if not content_type:  # none given: read the body as JSON
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _body(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type")
    if not _is_json(content_type):
        raise APIError(415, f"Unsupported content type '{content_type}': send the request body as JSON "
                            "(content-type: application/json).")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body is too large ({declared} bytes; the limit is {limit}).")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise APIError(413, f"Request body is too large (over {limit} bytes).")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    return body


def _cache_control(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


async def handle_chat(request: Request, wire: Wire) -> Response:
    """Parse with the client's wire, run the pipeline, render (or stream) the answer with the same wire."""
    gateway: Gateway = request.app.state.gateway
    request_id = _request_id()
    try:
        body = await _body(request, gateway.config.max_body_bytes)
        headers = plain_headers(request.scope["headers"])
        req = await wire.parse(body, headers)
        if gateway.config.model(req.model) is None:
            raise APIError(404, f"The model '{req.model}' does not exist or is not configured in scrimp.",
                           param="model", code="model_not_found")
        call = Call(req, attribute(headers, req), request_id=request_id,
                    cache_control=_cache_control(headers.get("x-scrimp-cache-control")))
        call.client_key = client_key(headers)
        call.key = caller_key(request.scope)
        call.hints = hints_of(headers)
        reply = await gateway.pipeline(call)
        if not req.stream:
            # a stage may have turned it into a stream: drained for a non-streaming client
            resp = reply.response if reply.response is not None else await collect(reply)
            payload = await wire.render(resp, call)
            return Response(orjson.dumps(payload), media_type="application/json", headers=_headers(call, reply))
    except APIError as exc:
        return _error(exc, wire.shape, request_id)
    events = reply.stream if reply.stream is not None else replay(reply.response)  # type: ignore[arg-type]
    return StreamingResponse(wire.stream(events, call, reply.served_model or req.model),
                             media_type="text/event-stream",
                             headers={**_headers(call, reply), "cache-control": "no-cache"})


async def chat_completions(request: Request) -> Response:
    return await handle_chat(request, OPENAI)


async def messages(request: Request) -> Response:
    return await handle_chat(request, ANTHROPIC)


async def count_tokens_endpoint(request: Request) -> Response:
    """Anthropic's token count: asked of the model's provider when it is Anthropic (with retries), else scrimp's
    own count. Errors in Anthropic's shape."""
    gateway: Gateway = request.app.state.gateway
    request_id = _request_id()
    try:
        body = await _body(request, gateway.config.max_body_bytes)
        req = anthropic_fmt.parse_request({**body, "max_tokens": 1})
        spec = gateway.config.model(req.model)
        if spec is None:
            raise APIError(404, f"model: {req.model} is not configured in scrimp")
        headers = {"x-scrimp-request-id": request_id, "x-scrimp-model": spec.name}
        if spec.provider != "anthropic":
            from scrimp.tokens import request_input_tokens

            return JSONResponse({"input_tokens": request_input_tokens(req)}, headers=headers)
        payload = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
        payload["model"] = spec.remote_name
        call = Call(req, request_id=request_id)
        call.client_key = client_key(request.headers)
        content = await gateway.upstream.forward(spec, "/v1/messages/count_tokens", payload, call)
    except APIError as exc:
        return _error(exc, "anthropic", request_id)
    return Response(content, media_type="application/json", headers=headers)


async def embeddings(request: Request) -> Response:
    """Passed through to the embedding model's provider, with retries (not cached). Each call is a ledger row
    priced from the provider's usage; errors in OpenAI's shape."""
    gateway: Gateway = request.app.state.gateway
    request_id = _request_id()
    call: Call | None = None
    spec: Any = None
    try:
        body = await _body(request, gateway.config.max_body_bytes)
        name = openai_fmt.check_model(body)
        spec = gateway.config.model(name)
        if spec is None or spec.provider != "openai":
            raise APIError(404, f"The model '{name}' is not a configured embedding model.",
                           param="model", code="model_not_found")
        req = openai_fmt.parse_request({"model": spec.name, "messages": [{"role": "user", "content": ""}]})
        call = Call(req, attribute(request.headers, req), request_id=request_id)
        call.client_key = client_key(request.headers)
        call.key = caller_key(request.scope)
        call.decisions["endpoint"] = "embeddings"
        content = await gateway.upstream.forward(spec, "/embeddings", {**body, "model": spec.remote_name}, call)
    except APIError as exc:
        if call is not None and gateway.ledger is not None:
            call.status, call.error = "error", exc.message[:500]
            record_call(gateway.ledger, call, None, spec.name, spec.provider)
        return _error(exc, "openai", request_id)
    if gateway.ledger is not None:
        record_call(gateway.ledger, call, _embedding_usage(content, spec.name), spec.name, spec.provider)
    return Response(content, media_type="application/json",
                    headers={"x-scrimp-request-id": request_id, "x-scrimp-model": spec.name})


def _embedding_usage(content: bytes, model: str) -> ChatResponse:
    """The provider's usage of an embeddings answer, as a response the ledger can price (input tokens only)."""
    try:
        usage = orjson.loads(content).get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        tokens = 0
    return ChatResponse(id="", model=model, content=[], usage=Usage(input=tokens))


def _model_entry(spec: Any, fmt: str) -> dict[str, Any]:
    if fmt == "anthropic":
        return {"type": "model", "id": spec.name, "display_name": spec.name, "created_at": "2025-01-01T00:00:00Z"}
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": spec.provider}


async def list_models(request: Request) -> Response:
    """The configured models, in Anthropic's shape when the request has an `anthropic-version` header."""
    gateway: Gateway = request.app.state.gateway
    fmt = "anthropic" if request.headers.get("anthropic-version") else "openai"
    data = [_model_entry(s, fmt) for s in gateway.config.models.values()]
    if fmt == "anthropic":
        return JSONResponse({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
    return JSONResponse({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    """One configured model (`GET /v1/models/{id}`), in either API's shape; 404 in that shape when unknown."""
    gateway: Gateway = request.app.state.gateway
    fmt = "anthropic" if request.headers.get("anthropic-version") else "openai"
    model_id = request.path_params["model_id"]
    spec = gateway.config.model(model_id)
    if spec is None:
        message = (f"model: {model_id}" if fmt == "anthropic"
                   else f"The model '{model_id}' does not exist or is not configured in scrimp.")
        return _error(APIError(404, message, param="model", code="model_not_found"), fmt, _request_id())
    return JSONResponse(_model_entry(spec, fmt))


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_app(config: GatewayConfig) -> Starlette:
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()  # flushes the ledger: a graceful stop loses no rows

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens_endpoint, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        *responses_api.routes(handle_chat),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint([*gateway.stages, *([gateway.auth] if gateway.auth else [])]),
              methods=["GET"]),
        *[route for stage in gateway.stages for route in stage.http_routes()],
    ], lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.gateway = gateway
    if gateway.auth is not None:
        gateway.auth.mount(app, gateway.stages)  # the guard in front of every endpoint, the admin endpoints
    return app


__all__ = ["Gateway", "count_tokens", "create_app"]
