"""Calls to the providers: the pipeline's terminal link.

Pooled aiohttp sessions (measured several times cheaper per request than httpx here; see docs/gateway.md),
timeouts, retries with exponential backoff and jitter on 408 / 409 / 429 / 5xx / 529 / connection errors
(honouring `retry-after`), then the next configured fallback model, then a clean error.

A stream is retried (and falls back) like any call until its first event reaches the client: the attempt waits
for the first event of the answer before it returns, so a refused, failing, silent or broken stream is retried
before the client has seen a byte. Once streaming, a failure ends the stream. A non-streamed call has
`timeout_s` as its total deadline; a stream has a connect timeout, a time-to-first-byte timeout and an idle
timeout between events, so a healthy long answer is never cut.

A Responses API request to an OpenAI model goes to that model's own Responses API with the client's body
(scrimp.formats.responses_upstream); to an Anthropic model it is translated like any other, and what only
OpenAI serves (hosted tools) is refused for it, an Anthropic fallback skipped.

An OpenAI `response_format` (JSON object or schema) served by an Anthropic model is checked: the answer must
parse as JSON (for a schema: the right top-level type and required keys); one repair call is made otherwise,
and a second bad answer is an error rather than prose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson

from scrimp import pricing
from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.formats import responses_upstream
from scrimp.formats.errors import APIError
from scrimp.gateway.config import GatewayConfig, ModelSpec
from scrimp.pipeline import Call, Reply, StreamEvent, events_from_response
from scrimp.tokens import count_tokens, request_input_tokens

log = logging.getLogger("scrimp.upstream")
RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 529}
ANTHROPIC_VERSION = "2023-06-01"
T = TypeVar("T")


class Upstream:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        policy = config.upstream
        # Streams have no total deadline: first-byte and idle timeouts are applied while reading.
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.connect_timeout_s)

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

    async def forward(self, spec: ModelSpec, path: str, body: dict[str, Any], call: Call) -> bytes:
        """A plain pass-through call (embeddings, token counts), retried like a chat call. Returns the provider's
        answer; raises APIError (its status and message) when it refused or kept failing."""
        url = spec.base_url + path
        data = orjson.dumps(body)
        headers = {**self.headers(spec, call), "content-type": "application/json"}

        async def attempt() -> bytes:
            async with self.session().post(url, data=data, headers=headers) as resp:
                content = await resp.read()
                if resp.status != 200:
                    raise _error_of(resp.status, content, resp.headers)
                return content

        return await self._retrying(call, spec, attempt)

    # -- the terminal -------------------------------------------------------------------------------

    async def __call__(self, call: Call) -> Reply:
        spec = self.config.model(call.target_model)
        if spec is None:
            raise APIError(404, f"The model '{call.target_model}' does not exist or is not configured in scrimp.",
                           param="model", code="model_not_found")
        candidates = [spec] + [self.config.models[name] for name in spec.fallbacks]
        if call.request.n > 1:
            # Anthropic models return one choice: n > 1 is refused for them (not served by n calls), and they
            # are skipped as fallbacks.
            if spec.provider == "anthropic":
                raise APIError(400, f"Invalid 'n': {spec.name} is an Anthropic model and returns one choice; "
                                    f"n={call.request.n} needs an OpenAI model (or ask for n=1).", param="n")
            candidates = [c for c in candidates if c.provider != "anthropic"]
        refused = responses_upstream.refusal(call.request)
        if refused is not None:  # hosted tools and their items: models with OpenAI's Responses API only
            if not spec.native_responses:
                raise refused
            candidates = [c for c in candidates if c.native_responses]
        last: APIError | None = None
        for n, candidate in enumerate(candidates):
            try:
                if _wants_json_check(call.request, candidate):
                    reply = await self._json_answer(call, candidate)
                else:
                    reply = await self._call_with_retries(call, candidate)
                if n:
                    call.decisions["fallback"] = candidate.name
                if reply.response is not None:
                    call.answer = reply  # billed now, whatever happens to the call on its way back
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
        key = spec.api_key or call.client_key
        if spec.provider == "anthropic":
            return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return {"authorization": f"Bearer {key}"}

    def body(self, spec: ModelSpec, request: ChatRequest) -> tuple[str, dict[str, Any]]:
        req = adapt_params(request, spec)
        if spec.provider == "anthropic":
            return "/v1/messages", anthropic_fmt.build_request(req, spec.remote_name, stream=req.stream)
        if responses_upstream.applies(req) and spec.native_responses:
            return responses_upstream.PATH, responses_upstream.build_request(req, spec.remote_name)
        return "/chat/completions", openai_fmt.build_request(req, spec.remote_name, stream=req.stream,
                                                             max_tokens_field=spec.max_tokens_field)

    async def _retrying(self, call: Call, spec: ModelSpec, attempt: Callable[[], Awaitable[T]],
                        timed_out_cost: Callable[[], float] | None = None) -> T:
        """Run `attempt` until it succeeds, fails for good, or the retries are spent. An attempt that timed out
        was most likely still answered and billed by the provider: `timed_out_cost` estimates that bill, and it
        is charged to the call."""
        policy = self.config.upstream
        for n in range(policy.retries + 1):
            try:
                return await attempt()
            except APIError as exc:
                error = exc
            except aiohttp.ConnectionTimeoutError:  # never reached the provider: nothing was billed
                error = APIError(504, f"upstream {spec.name} timed out connecting")
            except TimeoutError:
                error = APIError(504, f"upstream {spec.name} timed out")
                if timed_out_cost is not None:
                    call.spend(timed_out_cost(), f"attempt {n + 1} timed out; billed by the provider (estimated)",
                               "upstream", spec.name)
            except aiohttp.ClientError as exc:
                error = APIError(502, f"upstream {spec.name} unreachable: {type(exc).__name__}")
            if error.status not in RETRYABLE or n == policy.retries:
                raise error
            call.decisions["retries"] = call.decisions.get("retries", 0) + 1
            await asyncio.sleep(_backoff(policy.backoff_s, policy.max_backoff_s, n, error.headers))
        raise AssertionError("unreachable")

    async def _call_with_retries(self, call: Call, spec: ModelSpec, request: ChatRequest | None = None) -> Reply:
        req = request or call.request
        path, body = self.body(spec, req)
        headers = {**self.headers(spec, call), "content-type": "application/json"}
        data = orjson.dumps(body)
        url = spec.base_url + path

        parse, parse_stream, assemble = _dialect(spec, path)

        async def attempt() -> Reply:
            if req.stream:
                return await self._open_stream(call, spec, url, data, headers, parse_stream, assemble)
            async with self.session().post(url, data=data, headers=headers) as resp:
                content = await resp.read()
                if resp.status != 200:
                    raise _error_of(resp.status, content, resp.headers)
            try:
                result = parse(orjson.loads(content))
            except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
                raise APIError(502, f"upstream {spec.name} sent an answer that is not JSON") from exc
            result.model = spec.name
            return Reply(response=result, served_model=spec.name, served_provider=spec.provider)

        return await self._retrying(call, spec, attempt, None if req.stream else lambda: timed_out_cost(req, spec))

    async def _open_stream(self, call: Call, spec: ModelSpec, url: str, data: bytes, headers: dict[str, str],
                           parser: Callable[..., AsyncIterator[StreamEvent]],
                           assemble: Callable[[dict[str, Any]], ChatResponse]) -> Reply:
        """Open a stream and wait for its first event (so a failure so far can still be retried)."""
        policy = self.config.upstream
        first_byte = policy.first_byte_timeout_s or policy.timeout_s
        idle = policy.idle_timeout_s or policy.timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + first_byte
        async with asyncio.timeout_at(deadline):
            resp = await self.session().post(url, data=data, headers=headers, timeout=self._stream_timeout)
        if resp.status != 200:
            try:
                async with asyncio.timeout(idle):
                    content = await resp.read()
            finally:
                resp.release()
            raise _error_of(resp.status, content, resp.headers)
        state: dict[str, Any] = {}

        async def lines() -> AsyncIterator[str]:
            # Read whatever has arrived and split it into lines: one timeout per network read, not per line.
            when, what = deadline, f"no first byte within {first_byte:g}s"
            pending = b""
            while True:
                try:
                    async with asyncio.timeout_at(when):
                        chunk = await resp.content.readany()
                except TimeoutError as exc:
                    raise APIError(504, f"upstream {spec.name} timed out: {what}") from exc
                if not chunk:
                    if pending:
                        yield pending.decode("utf-8", "replace").rstrip("\r")
                    return
                when, what = loop.time() + idle, f"no data for {idle:g}s"
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    yield raw.decode("utf-8", "replace").rstrip("\r")

        parsed = parser(lines(), state)

        async def pull() -> StreamEvent | None:
            try:
                event = await parsed.__anext__()
            except StopAsyncIteration:
                return None
            except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
                raise APIError(502, f"upstream {spec.name} stream broke: {type(exc).__name__}") from exc
            if call.first_token_at is None and event.kind in ("text", "tool_start"):
                call.first_token_at = time.perf_counter()
            if event.kind == "done" and event.response is not None:
                event.response.model = spec.name
            return event

        try:
            first = await pull()
        except BaseException:
            resp.close()
            raise

        async def events() -> AsyncIterator[StreamEvent]:
            finished = False
            try:
                event = first
                while event is not None:
                    finished = finished or event.kind == "done"
                    yield event
                    event = await pull()
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
            blocks = list(got.content) + [b for choice, _ in got.extra_choices for b in choice]
            received = sum(count_tokens(b.get("text", "")) for b in blocks if b.get("type") == "text")
            if got.usage.total_input == 0:
                call.decisions["usage"] = "estimated"
                got.usage = Usage(input=request_input_tokens(call.request), output=received)
            elif got.usage.output < received:
                # The final usage never came: bill at least the tokens the client was sent.
                call.decisions["usage"] = "estimated"
                got.usage.output = received
            return got

        return Reply(stream=events(), served_model=spec.name, served_provider=spec.provider, partial=partial)

    # -- JSON answers from models without a JSON mode ---------------------------------------------------

    async def _json_answer(self, call: Call, spec: ModelSpec) -> Reply:
        """Ask for the whole answer (a stream is buffered), check it is JSON, repair once, or refuse."""
        req = dataclasses.replace(call.request, stream=False)
        reply = await self._call_with_retries(call, spec, req)
        resp = reply.response
        assert resp is not None
        problem = _json_problem(resp, req.response_format or {})
        if problem is not None:
            call.decisions["json_repair"] = problem
            self._charge(call, spec, resp, "answer that was not the JSON asked for")
            bad = [b for b in resp.content if b.get("type") == "text"] or [{"type": "text", "text": ""}]
            wanted = "that fits the schema" if (req.response_format or {}).get("type") == "json_schema" else "object"
            ask = (f"That reply is not valid JSON ({problem}). Reply again with only the JSON {wanted}: no prose, "
                   "no code fences.")
            repair = dataclasses.replace(req, messages=[*req.messages, {"role": "assistant", "content": bad},
                                                         {"role": "user", "content": [{"type": "text", "text": ask}]}])
            reply = await self._call_with_retries(call, spec, repair)
            resp = reply.response
            assert resp is not None
            problem = _json_problem(resp, req.response_format or {})
            if problem is not None:
                self._charge(call, spec, resp, "repaired answer that was still not JSON")
                raise APIError(502, f"{spec.name} did not answer with valid JSON, even when asked again: {problem}",
                               code="invalid_json_output")
        if call.request.stream:  # the checked answer, sent as a stream
            done = resp
            call.first_token_at = call.first_token_at or time.perf_counter()
            return Reply(stream=events_from_response(done), served_model=spec.name, served_provider=spec.provider,
                         partial=lambda: done)
        return reply

    @staticmethod
    def _charge(call: Call, spec: ModelSpec, resp: ChatResponse, what: str) -> None:
        """A rejected answer was still billed by the provider: record its cost on the call."""
        from scrimp import pricing

        try:
            usd = pricing.cost(spec.name, spec.provider, resp.usage)
        except pricing.UnknownPrice:
            usd = 0.0
        call.spend(usd, f"json: {what}", model=spec.name)


def _dialect(spec: ModelSpec, path: str) -> tuple[Callable[[dict[str, Any]], ChatResponse],
                                                   Callable[..., AsyncIterator[StreamEvent]],
                                                   Callable[[dict[str, Any]], ChatResponse]]:
    """How the API at `path` answers: (parse a response, parse a stream, assemble a stream's state)."""
    if spec.provider == "anthropic":
        return anthropic_fmt.parse_response, anthropic_fmt.parse_stream, anthropic_fmt.assemble
    if path == responses_upstream.PATH:
        return responses_upstream.parse_response, responses_upstream.parse_stream, responses_upstream.assemble
    return openai_fmt.parse_response, openai_fmt.parse_stream, openai_fmt.assemble


def _wants_json_check(req: ChatRequest, spec: ModelSpec) -> bool:
    fmt = req.response_format or {}
    return spec.provider == "anthropic" and fmt.get("type") in ("json_object", "json_schema")


def _json_problem(resp: ChatResponse, fmt: dict[str, Any]) -> str | None:
    """Why the answer is not the JSON asked for (None when it is). A clean answer wrapped in a code fence is
    unwrapped in place. A tool call, or an answer cut by max_tokens, is left alone (as OpenAI does)."""
    if resp.stop_reason in ("tool_use", "max_tokens") or any(b.get("type") == "tool_use" for b in resp.content):
        return None
    text = resp.text().strip()
    if text.startswith("```"):
        body = text[3:]
        body = body[body.find("\n") + 1:] if "\n" in body else ""
        text = body.rsplit("```", 1)[0].strip() if body.rstrip().endswith("```") else text
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {str(exc).split(':')[0]}"
    schema = ((fmt.get("json_schema") or {}).get("schema") or {}) if fmt.get("type") == "json_schema" else {}
    if fmt.get("type") == "json_object" or schema.get("type", "object") == "object":
        if not isinstance(value, dict):
            return f"expected a JSON object, got {type(value).__name__}"
        missing = [k for k in schema.get("required") or [] if k not in value]
        if missing:
            return f"missing required keys: {', '.join(missing)}"
    resp.content = [{"type": "text", "text": text}]
    return None


UNKNOWN_OUTPUT_TOKENS = 256  # a timed-out answer's output, when the request set no max_tokens


def timed_out_cost(req: ChatRequest, spec: ModelSpec) -> float:
    """What the provider bills for an answer the gateway stopped waiting for: the input as sent, and the output
    estimated at the request's max_tokens (or UNKNOWN_OUTPUT_TOKENS)."""
    usage = Usage(input=request_input_tokens(req), output=req.max_tokens or UNKNOWN_OUTPUT_TOKENS)
    try:
        return pricing.cost(spec.name, spec.provider, usage)
    except pricing.UnknownPrice:
        return 0.0


def _error_of(status: int, content: bytes, headers: Any) -> APIError:
    """A provider's error (either API's shape, or none) as an APIError with its status, message and param."""
    message, param, code = f"upstream returned {status}", None, None
    try:
        data = orjson.loads(content)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            message = str(err["message"])
            param = err.get("param") if isinstance(err.get("param"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
    except orjson.JSONDecodeError:
        pass
    keep = {k: headers[k] for k in ("retry-after",) if k in headers}
    return APIError(status, message, param=param, code=code, headers=keep)


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
