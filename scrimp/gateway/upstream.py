"""Calls to the providers: the pipeline's terminal link.

Pooled aiohttp sessions (measured several times cheaper per request than httpx here; see docs/gateway.md),
timeouts, retries with exponential backoff and jitter on 429 / 5xx / 529 /
connection errors (honouring `retry-after`), then the next configured fallback model, then a clean error.
A stream is retried only before its first byte; once streaming, a failure ends the stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.gateway.config import GatewayConfig, ModelSpec
from scrimp.pipeline import Call, Reply, StreamEvent
from scrimp.tokens import count_tokens

log = logging.getLogger("scrimp.upstream")
RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 529}
ANTHROPIC_VERSION = "2023-06-01"


class Upstream:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            policy = self.config.upstream
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=256, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=policy.timeout_s, sock_connect=policy.connect_timeout_s),
                json_serialize=lambda obj: orjson.dumps(obj).decode(), auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, spec: ModelSpec, path: str, body: dict[str, Any], call: Call) -> tuple[int, bytes]:
        """A plain pass-through call (embeddings, token counts)."""
        async with self.session().post(spec.base_url + path, data=orjson.dumps(body),
                                       headers={**self.headers(spec, call), "content-type": "application/json"}) as r:
            return r.status, await r.read()

    # -- the terminal -------------------------------------------------------------------------------

    async def __call__(self, call: Call) -> Reply:
        spec = self.config.model(call.target_model)
        if spec is None:
            raise APIError(404, f"The model '{call.target_model}' does not exist or is not configured in scrimp.",
                           param="model", code="model_not_found")
        candidates = [spec] + [self.config.models[name] for name in spec.fallbacks]
        last: APIError | None = None
        for n, candidate in enumerate(candidates):
            try:
                reply = await self._call_with_retries(call, candidate)
                if n:
                    call.decisions["fallback"] = candidate.name
                return reply
            except APIError as exc:
                last = exc
                if exc.status not in RETRYABLE and exc.status != 0:
                    raise
                log.warning("model %s failed (%s); %s", candidate.name, exc.status,
                            "trying fallback" if n + 1 < len(candidates) else "giving up")
        assert last is not None
        raise last

    def headers(self, spec: ModelSpec, call: Call) -> dict[str, str]:
        key = spec.api_key or call.decisions.get("_client_key") or ""
        if spec.provider == "anthropic":
            return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return {"authorization": f"Bearer {key}"}

    def body(self, spec: ModelSpec, call: Call) -> tuple[str, dict[str, Any]]:
        req = adapt_params(call.request, spec)
        if spec.provider == "anthropic":
            return "/v1/messages", anthropic_fmt.build_request(req, spec.remote_name, stream=req.stream)
        return "/chat/completions", openai_fmt.build_request(req, spec.remote_name, stream=req.stream,
                                                             max_tokens_field=spec.max_tokens_field)

    async def _call_with_retries(self, call: Call, spec: ModelSpec) -> Reply:
        policy = self.config.upstream
        path, body = self.body(spec, call)
        headers = {**self.headers(spec, call), "content-type": "application/json"}
        data = orjson.dumps(body)
        url = spec.base_url + path
        for attempt in range(policy.retries + 1):
            try:
                if call.request.stream:
                    return await self._open_stream(call, spec, url, data, headers)
                async with self.session().post(url, data=data, headers=headers) as resp:
                    content = await resp.read()
                    if resp.status == 200:
                        parse = anthropic_fmt.parse_response if spec.provider == "anthropic" else openai_fmt.parse_response
                        result = parse(orjson.loads(content))
                        result.model = spec.name
                        return Reply(response=result, served_model=spec.name, served_provider=spec.provider)
                    error = _error_of(resp.status, content, resp.headers)
            except TimeoutError:
                error = APIError(504, f"upstream {spec.name} timed out")
            except aiohttp.ClientError as exc:
                error = APIError(502, f"upstream {spec.name} unreachable: {type(exc).__name__}")
            if error.status not in RETRYABLE or attempt == policy.retries:
                raise error
            call.decisions["retries"] = call.decisions.get("retries", 0) + 1
            await asyncio.sleep(_backoff(policy.backoff_s, policy.max_backoff_s, attempt, error.headers))
        raise AssertionError("unreachable")

    async def _open_stream(self, call: Call, spec: ModelSpec, url: str, data: bytes,
                           headers: dict[str, str]) -> Reply:
        resp = await self.session().post(url, data=data, headers=headers)
        if resp.status != 200:
            content = await resp.read()
            resp.release()
            raise _error_of(resp.status, content, resp.headers)
        state: dict[str, Any] = {}
        parser = anthropic_fmt.parse_stream if spec.provider == "anthropic" else openai_fmt.parse_stream
        assemble = anthropic_fmt.assemble if spec.provider == "anthropic" else openai_fmt.assemble

        async def lines() -> AsyncIterator[str]:
            async for raw in resp.content:
                yield raw.decode("utf-8", "replace").rstrip("\r\n")

        async def events() -> AsyncIterator[StreamEvent]:
            finished = False
            try:
                async for event in parser(lines(), state):
                    if call.first_token_at is None and event.kind in ("text", "tool_start"):
                        call.first_token_at = time.perf_counter()
                    if event.kind == "done" and event.response is not None:
                        event.response.model = spec.name
                        finished = True
                    yield event
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise APIError(502, f"upstream {spec.name} stream broke: {type(exc).__name__}") from exc
            finally:
                # Closing an unfinished response drops its connection: that is what cancels the upstream call
                # when the client hangs up.
                if finished:
                    resp.release()
                else:
                    resp.close()

        def partial() -> ChatResponse:
            """What arrived before the stream ended early, with usage estimated where none was sent."""
            got = assemble(state) if state else ChatResponse(id="", model=spec.name, content=[])
            got.model = spec.name
            received = sum(count_tokens(b.get("text", "")) for b in got.content if b.get("type") == "text")
            if got.usage.total_input == 0:
                call.decisions["usage"] = "estimated"
                got.usage = Usage(input=estimate_input_tokens(call), output=received)
            elif got.usage.output < received:
                # The final usage never came: bill at least the tokens the client was sent.
                call.decisions["usage"] = "estimated"
                got.usage.output = received
            return got

        return Reply(stream=events(), served_model=spec.name, served_provider=spec.provider, partial=partial)


def estimate_input_tokens(call: Call) -> int:
    from scrimp.tokens import block_text, tool_text

    req = call.request
    n = sum(count_tokens(tool_text(t)) for t in req.tools) + sum(count_tokens(b.get("text", "")) for b in req.system)
    for turn in req.messages:
        n += 3 + sum(count_tokens(block_text(b)) for b in turn["content"])
    return n + 3


def _error_of(status: int, content: bytes, headers: Any) -> APIError:
    message = f"upstream returned {status}"
    try:
        data = orjson.loads(content)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            message = err["message"]
    except orjson.JSONDecodeError:
        pass
    keep = {k: headers[k] for k in ("retry-after",) if k in headers}
    return APIError(status, message, headers=keep)


def _backoff(base: float, cap: float, attempt: int, headers: dict[str, str]) -> float:
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return min(float(retry_after), cap)
        except ValueError:
            pass
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)


_ADAPTABLE = {"temperature", "top_p", "seed", "stop"}


def adapt_params(req: ChatRequest, spec: ModelSpec) -> ChatRequest:
    """Drop what this model refuses, so a request routed (or fallen back) to it is not answered with a 400.
    The max-tokens field name is adapted at rendering (`max_tokens_field`)."""
    drop: dict[str, Any] = {}
    for rule in spec.rejects:
        keys = rule.split("+")
        if len(keys) > 1:  # refuses the combination: keep the first, drop the rest
            if all(getattr(req, k, None) not in (None, []) for k in keys):
                drop.update({k: None for k in keys[1:]})
        elif rule in _ADAPTABLE and getattr(req, rule, None) not in (None, []):
            drop[rule] = None
    if not drop:
        return req
    if "stop" in drop:
        drop["stop"] = []
    return dataclasses.replace(req, **drop)
