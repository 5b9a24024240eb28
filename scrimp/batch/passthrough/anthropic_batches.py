"""Anthropic Message Batches through the gateway: `/v1/messages/batches` (create: each request's model mapped;
list, retrieve, cancel) and its `/results` (models named back). `results_url` points at the gateway, where the SDK
reads results. A batch's lines are recorded the first time it is seen ended."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scrimp.attribution import tenant_of
from scrimp.batch.passthrough.base import Passthrough, rename_models, who_made
from scrimp.batch.providers import anthropic_line, anthropic_root
from scrimp.formats.errors import APIError
from scrimp.models import ModelSpec


class AnthropicBatches(Passthrough):
    provider = "anthropic"
    kind = "msgbatch"

    def batch_url(self, spec: ModelSpec, batch_id: str) -> str:
        return f"{anthropic_root(spec)}/messages/batches/{batch_id}"

    def present(self, obj: dict[str, Any], request: Request) -> dict[str, Any]:
        if obj.get("results_url"):  # the SDK reads results from here: through scrimp, not straight upstream
            obj["results_url"] = f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{obj['id']}/results"
        return obj

    async def create(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise APIError(400, "requests: Field required (a non-empty list)")
        spec: ModelSpec | None = None
        models: dict[str, str] = {}
        for i, item in enumerate(items):
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(params, dict):
                raise APIError(400, f"requests.{i}.params: Field required")
            line_spec = self.spec_for(params.get("model"), f"requests.{i}.params.model")
            self.same_account(spec, line_spec, f"requests.{i}")
            spec = spec or line_spec
            models[line_spec.remote_name] = line_spec.name
            item["params"] = {**params, "model": line_spec.remote_name}
        assert spec is not None
        status, got = await self.send(spec, "POST", anthropic_root(spec) + "/messages/batches", request, json=body)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        obj = orjson.loads(got)
        await self.remember(obj["id"], self.kind, spec, who_made(request, models))
        return JSONResponse(self.present(obj, request))

    async def get(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, recorded = await self.known(batch_id, tenant_of(request.headers))
        status, got = await self.send(spec, "GET", self.batch_url(spec, batch_id), request)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        obj = orjson.loads(got)
        if obj.get("processing_status") == "ended" and not recorded:
            await self.record_results(batch_id, spec, who, request)
        return JSONResponse(self.present(obj, request))

    async def results(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, _ = await self.known(batch_id, tenant_of(request.headers))
        content = await self.record_results(batch_id, spec, who, request)
        if content is None:  # not ended (the provider's own error says so), or not readable
            status, got = await self.send(spec, "GET", self.batch_url(spec, batch_id) + "/results", request)
            return Response(got, status_code=status, media_type="application/json")
        return Response(rename_models(content, who.get("models") or {}), media_type="application/x-jsonl")

    async def cancel(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, _, _ = await self.known(batch_id, tenant_of(request.headers))
        status, got = await self.send(spec, "POST", self.batch_url(spec, batch_id) + "/cancel", request)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        return JSONResponse(self.present(orjson.loads(got), request))

    async def record_results(self, batch_id: str, spec: ModelSpec, who: dict[str, Any],
                             request: Request | None) -> bytes | None:
        """The batch's results (None when they cannot be read yet), its lines recorded if they were not."""
        status, content = await self.send(spec, "GET", self.batch_url(spec, batch_id) + "/results", request)
        if status != 200:
            return None
        results = [anthropic_line(orjson.loads(raw), "") for raw in content.splitlines() if raw.strip()]
        await self.record(batch_id, spec, who, results)
        return content

    async def poll_one(self, batch_id: str, spec: ModelSpec, who: dict[str, Any]) -> None:
        status, got = await self.send(spec, "GET", self.batch_url(spec, batch_id), None)
        if status == 200 and orjson.loads(got).get("processing_status") == "ended":
            await self.record_results(batch_id, spec, who, None)
