"""The providers' Batch APIs, as the lane uses them: submit a set of lines, ask how a batch is doing, read its
results line by line. OpenAI: a JSONL file uploaded to /files, then /batches (the lane's batch id in its
metadata, to find it again after a crash). Anthropic: /v1/messages/batches with the requests inline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.models import ModelSpec

ANTHROPIC_VERSION = "2023-06-01"
# What each provider takes in one batch (requests, bytes); larger sets are split.
LIMITS = {"openai": (50_000, 200 * 1024 * 1024), "anthropic": (100_000, 256 * 1024 * 1024)}
RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 529}


class ProviderError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class LineResult:
    custom_id: str
    response: ChatResponse | None  # the answer, or None when the line failed
    error: dict[str, Any] | None = None  # {"status", "message", "code"}


def line_body(spec: ModelSpec, req: ChatRequest) -> dict[str, Any]:
    """A line's request as its provider's batch takes it (the per-request endpoint's body, never streamed)."""
    if spec.provider == "anthropic":
        return anthropic_fmt.build_request(req, spec.remote_name, stream=False)
    return openai_fmt.build_request(req, spec.remote_name, stream=False, max_tokens_field=spec.max_tokens_field)


def headers_for(spec: ModelSpec, key: str | None = None) -> dict[str, str]:
    key = spec.api_key or key or ""
    if spec.provider == "anthropic":
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    return {"authorization": f"Bearer {key}"}


def anthropic_root(spec: ModelSpec) -> str:
    return spec.base_url + "/v1"  # Anthropic base URLs are configured without /v1 (the SDK's convention)


class BatchClient:
    def __init__(self, timeout_s: float = 120.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, url: str, headers: dict[str, str], *, json: Any = None,
                      data: Any = None, attempts: int = 4, creates: bool = False) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP call, retried with backoff on 429 / 5xx / connection errors. A call that `creates` a provider
        batch is retried only where nothing can have been created (a 429, a connection never made): after a 5xx or
        a lost answer the batch may exist, and the worker's recovery finds it rather than creating a second."""
        body = orjson.dumps(json) if json is not None else data
        hdrs = {**headers, **({"content-type": "application/json"} if json is not None else {})}
        for n in range(attempts):
            try:
                form = data() if callable(data) else body  # a multipart form is built anew for each attempt
                async with self.session().request(method, url, data=form, headers=hdrs) as resp:
                    content = await resp.read()
                    if resp.status not in RETRYABLE or n == attempts - 1 or (creates and resp.status != 429):
                        return resp.status, content, dict(resp.headers)
            except aiohttp.ClientConnectorError:
                if n == attempts - 1:
                    raise
            except (aiohttp.ClientError, TimeoutError):
                if n == attempts - 1 or creates:
                    raise
            await asyncio.sleep(min(8.0, 0.25 * 2 ** n))
        raise AssertionError("unreachable")

    async def json(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
        status, content, _ = await self.request(method, url, headers, **kw)
        if status >= 400:
            raise ProviderError(status, _message(content))
        return orjson.loads(content)

    # -- the lane's batches -----------------------------------------------------------------------------
    async def submit(self, spec: ModelSpec, lines: list[tuple[str, dict[str, Any]]], window: str,
                     token: str) -> str:
        """Send the lines as one provider batch; returns the provider's batch id."""
        hdrs = headers_for(spec)
        if spec.provider == "anthropic":
            got = await self.json("POST", anthropic_root(spec) + "/messages/batches", hdrs, creates=True,
                                  json={"requests": [{"custom_id": cid, "params": body} for cid, body in lines]})
            return str(got["id"])
        content = b"".join(orjson.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                         "body": body}) + b"\n" for cid, body in lines)

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("purpose", "batch")
            f.add_field("file", content, filename=f"{token}.jsonl", content_type="application/jsonl")
            return f
        upload = await self.json("POST", spec.base_url + "/files", hdrs, data=form)
        got = await self.json("POST", spec.base_url + "/batches", hdrs, creates=True, json={
            "input_file_id": upload["id"], "endpoint": "/v1/chat/completions", "completion_window": window,
            "metadata": {"scrimp_batch": token}})
        return str(got["id"])

    async def ended(self, spec: ModelSpec, remote_id: str) -> bool:
        hdrs = headers_for(spec)
        if spec.provider == "anthropic":
            got = await self.json("GET", f"{anthropic_root(spec)}/messages/batches/{remote_id}", hdrs)
            return got.get("processing_status") == "ended"
        got = await self.json("GET", f"{spec.base_url}/batches/{remote_id}", hdrs)
        return got.get("status") in ("completed", "failed", "expired", "cancelled")

    async def results(self, spec: ModelSpec, remote_id: str) -> list[LineResult]:
        """Every line the provider reports on (a line it does not mention is the caller's to fail)."""
        hdrs = headers_for(spec)
        out: list[LineResult] = []
        if spec.provider == "anthropic":
            status, content, _ = await self.request(
                "GET", f"{anthropic_root(spec)}/messages/batches/{remote_id}/results", hdrs)
            if status >= 400:
                raise ProviderError(status, _message(content))
            for raw in content.splitlines():
                if raw.strip():
                    out.append(anthropic_line(orjson.loads(raw), spec.name))
            return out
        batch = await self.json("GET", f"{spec.base_url}/batches/{remote_id}", hdrs)
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                status, content, _ = await self.request("GET", f"{spec.base_url}/files/{batch[key]}/content", hdrs)
                if status >= 400:
                    raise ProviderError(status, _message(content))
                out.extend(openai_line(orjson.loads(raw), spec.name) for raw in content.splitlines() if raw.strip())
        return out

    async def find(self, spec: ModelSpec, token: str, since: float, count: int, known: set[str]) -> str | None:
        """The provider batch a crashed submission made, if it got that far: OpenAI by the token in its
        metadata; Anthropic (no metadata) by a batch created since then with the same number of requests."""
        hdrs = headers_for(spec)
        if spec.provider == "anthropic":
            page = await self.json("GET", f"{anthropic_root(spec)}/messages/batches?limit=100", hdrs)
            from datetime import datetime

            for b in page.get("data", []):
                created = datetime.fromisoformat(str(b.get("created_at"))).timestamp()
                if b["id"] not in known and created >= since - 5 \
                        and sum((b.get("request_counts") or {}).values()) == count:
                    return str(b["id"])
            return None
        page = await self.json("GET", f"{spec.base_url}/batches?limit=100", hdrs)
        for b in page.get("data", []):
            if (b.get("metadata") or {}).get("scrimp_batch") == token:
                return str(b["id"])
        return None


def openai_line(line: dict[str, Any], model: str) -> LineResult:
    resp = line.get("response") or {}
    body = resp.get("body") or {}
    if resp.get("status_code") == 200 and isinstance(body, dict) and body.get("choices"):
        answer = openai_fmt.parse_response(body)
        answer.model = model or answer.model
        return LineResult(str(line.get("custom_id")), answer)
    err = line.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
    return LineResult(str(line.get("custom_id")), None, {
        "status": int(resp.get("status_code") or (504 if err.get("code") == "batch_expired" else 502)),
        "message": str(err.get("message") or "the provider's batch did not answer this line"),
        "code": err.get("code")})


def anthropic_line(line: dict[str, Any], model: str) -> LineResult:
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        answer = anthropic_fmt.parse_response(result.get("message") or {})
        answer.model = model or answer.model
        return LineResult(str(line.get("custom_id")), answer)
    err = ((result.get("error") or {}).get("error") or {}) if kind == "errored" else {}
    status = {"errored": 400 if err.get("type") == "invalid_request_error" else 502, "expired": 504,
              "canceled": 499}.get(str(kind), 502)
    return LineResult(str(line.get("custom_id")), None, {
        "status": status, "code": kind,
        "message": str(err.get("message") or f"the provider's batch reported this line {kind}")})


def _message(content: bytes) -> str:
    try:
        data = orjson.loads(content)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    except orjson.JSONDecodeError:
        pass
    return content[:200].decode("utf-8", "replace")
