"""OpenAI Files + Batches through the gateway: `/v1/files` (batch input files: each line's model mapped),
`/v1/files/{id}` and its `/content` (output and error files, models named back), `/v1/batches` (create, list,
retrieve, cancel). A batch's lines are recorded the first time it is seen ended."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import Response

from scrimp.attribution import tenant_of
from scrimp.batch.passthrough.base import Passthrough, rename_models, who_made
from scrimp.batch.providers import LineResult
from scrimp.canonical import ChatResponse, Usage
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.models import ModelSpec

ENDED = {"completed", "failed", "expired", "cancelled"}


def _json(content: bytes, status: int) -> Response:
    return Response(content, status_code=status, media_type="application/json")


class OpenAIBatches(Passthrough):
    provider = "openai"
    kind = "batch"

    def batch_url(self, spec: ModelSpec, batch_id: str) -> str:
        return f"{spec.base_url}/batches/{batch_id}"

    async def upload(self, request: Request) -> Response:
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch" or upload is None or isinstance(upload, str):
            raise APIError(400, "scrimp passes batch input files through (purpose 'batch', with a 'file').",
                           param="purpose")
        data = await upload.read()
        spec: ModelSpec | None = None
        models: dict[str, str] = {}
        out = []
        for n, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
                body = line["body"]
                line_spec = self.spec_for(body.get("model"), f"line {n}: body.model")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise APIError(400, f"line {n}: not a batch line ({{custom_id, method, url, body}}).") from exc
            self.same_account(spec, line_spec, f"line {n}")
            spec = spec or line_spec
            models[line_spec.remote_name] = line_spec.name
            line["body"] = {**body, "model": line_spec.remote_name}
            out.append(orjson.dumps(line))
        if spec is None:
            raise APIError(400, "The input file has no lines.", param="file")
        content = b"\n".join(out) + b"\n"

        def form_data() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("purpose", "batch")
            f.add_field("file", content, filename=upload.filename or "batch.jsonl", content_type="application/jsonl")
            return f
        status, got = await self.send(spec, "POST", spec.base_url + "/files", request, data=form_data)
        if status == 200:
            await self.remember(orjson.loads(got)["id"], "file", spec, who_made(request, models))
        return _json(got, status)

    async def get_file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        spec, _, _ = await self.known(file_id, tenant_of(request.headers))
        return _json(*await self.send(spec, "GET", f"{spec.base_url}/files/{file_id}", request))

    async def file_content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        spec, who, _ = await self.known(file_id, tenant_of(request.headers))
        status, got = await self.send(spec, "GET", f"{spec.base_url}/files/{file_id}/content", request)
        if status == 200:
            got = rename_models(got, who.get("models") or {})
        return Response(got, status_code=status, media_type="application/jsonl")

    async def create_batch(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        file_id = body.get("input_file_id") if isinstance(body, dict) else None
        spec, who, _ = await self.known(str(file_id), tenant_of(request.headers))
        status, got = await self.send(spec, "POST", spec.base_url + "/batches", request, json=body)
        if status == 200:
            await self.remember(orjson.loads(got)["id"], "batch", spec, who_made(request, who.get("models") or {}))
        return _json(got, status)

    async def get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, recorded = await self.known(batch_id, tenant_of(request.headers))
        status, got = await self.send(spec, "GET", self.batch_url(spec, batch_id), request)
        if status == 200:
            await self.on_status(batch_id, spec, who, orjson.loads(got), recorded, request)
        return _json(got, status)

    async def cancel_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, _, _ = await self.known(batch_id, tenant_of(request.headers))
        return _json(*await self.send(spec, "POST", f"{spec.base_url}/batches/{batch_id}/cancel", request))

    async def on_status(self, batch_id: str, spec: ModelSpec, who: dict[str, Any], batch: dict[str, Any],
                        recorded: int, request: Request | None) -> None:
        """An ended batch: its output and error files become readable through scrimp, and its lines recorded."""
        if batch.get("status") not in ENDED:
            return
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                await self.remember(batch[key], "output", spec, who)
        if recorded:
            return
        results: list[LineResult] = []
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                status, content = await self.send(spec, "GET", f"{spec.base_url}/files/{batch[key]}/content", request)
                if status != 200:
                    return  # not readable now: recorded on a later look
                results.extend(result_of(orjson.loads(raw), batch.get("endpoint", ""))
                               for raw in content.splitlines() if raw.strip())
        await self.record(batch_id, spec, who, results)

    async def poll_one(self, batch_id: str, spec: ModelSpec, who: dict[str, Any]) -> None:
        status, got = await self.send(spec, "GET", self.batch_url(spec, batch_id), None)
        if status == 200:
            await self.on_status(batch_id, spec, who, orjson.loads(got), 0, None)


def result_of(line: dict[str, Any], endpoint: str) -> LineResult:
    """One line of an output or error file: chat completions, responses or embeddings."""
    resp = line.get("response") or {}
    body = resp.get("body") if isinstance(resp.get("body"), dict) else {}
    cid = str(line.get("custom_id"))
    if resp.get("status_code") == 200 and body:
        if endpoint == "/v1/responses":
            from scrimp.formats import responses_upstream

            answer = responses_upstream.parse_response(body)
        elif endpoint == "/v1/embeddings":
            usage = body.get("usage") or {}
            answer = ChatResponse(id="", model=body.get("model", ""), content=[],
                                  usage=Usage(input=int(usage.get("prompt_tokens") or 0)))
        else:
            answer = openai_fmt.parse_response(body)
        answer.model = body.get("model", "")
        return LineResult(cid, answer)
    err = line.get("error") or body.get("error") or {}
    return LineResult(cid, None, {"status": int(resp.get("status_code") or 504), "code": err.get("code"),
                                  "message": str(err.get("message") or "the line failed")})
