"""The providers' own Batch APIs through scrimp: OpenAI Files + Batches and Anthropic Message Batches, with the
official SDKs pointed at the gateway. Model names are mapped to the provider's (and back in the results), the
provider key of the config is used, and each line is written to the ledger once, at the batch rate, for the
tenant / feature / key that created the batch, when its result is known: whether the client retrieves the
batch or its results once, many times or never (the worker polls what is unrecorded).

What scrimp knows of each object (file, batch) is a row of `batch_passthrough`: which model's upstream holds it,
who made it, and whether its lines are recorded."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp.attribution import caller_key, client_key, plain_headers, tenant_of
from scrimp.batch import recorder
from scrimp.batch.providers import LineResult, anthropic_line, anthropic_root, headers_for
from scrimp.canonical import ChatResponse, Usage
from scrimp.formats import openai as openai_fmt
from scrimp.formats.errors import APIError
from scrimp.models import ModelSpec
from scrimp.pipeline import Attribution, Call, CallerKey, new_request_id

if TYPE_CHECKING:
    from scrimp.batch.stage import BatchStage

log = logging.getLogger("scrimp.batch")
ENDED = {"completed", "failed", "expired", "cancelled"}
_polled: dict[str, float] = {}  # passthrough batch id -> when the worker last asked about it


def _err(exc: APIError, shape: str) -> Response:
    return JSONResponse(exc.body(shape), status_code=exc.status, headers={"x-scrimp-request-id": new_request_id()})


def _who(request: Request, models: dict[str, str]) -> dict[str, Any]:
    headers = plain_headers(request.scope["headers"])
    key = caller_key(request.scope)
    return {"tenant": tenant_of(headers), "user": headers.get("x-scrimp-user"),
            "feature": headers.get("x-scrimp-feature") or (key.feature if key else None),
            "key": [key.id, key.tenant, key.name, key.feature] if key is not None else None,
            "models": models}  # the provider's model name -> scrimp's


class Passthrough:
    def __init__(self, lane: BatchStage) -> None:
        self.lane = lane

    @property
    def store(self) -> Any:
        return self.lane.store

    # -- bookkeeping ---------------------------------------------------------------------------------------
    async def remember(self, obj_id: str, kind: str, spec: ModelSpec, who: dict[str, Any]) -> None:
        def work(cur: Any) -> None:
            cur.execute(self.store.q("SELECT 1 FROM batch_passthrough WHERE id = ?"), (obj_id,))
            if cur.fetchone() is None:
                cur.execute(self.store.q("INSERT INTO batch_passthrough (id, kind, provider, model, who, created) "
                                         "VALUES (?, ?, ?, ?, ?, ?)"),
                            (obj_id, kind, spec.provider, spec.name, orjson.dumps(who).decode(), time.time()))
        await asyncio.to_thread(self.store.tx, work)

    async def known(self, obj_id: str, tenant: str, shape: str) -> tuple[ModelSpec, dict[str, Any], str, int]:
        row = await asyncio.to_thread(self.store.db.execute, "SELECT model, who, kind, recorded FROM "
                                      "batch_passthrough WHERE id = ?", (obj_id,), "one")
        spec = self.lane.ctx.models.get(row[0]) if row else None
        who = orjson.loads(row[1]) if row else {}
        if spec is None or who.get("tenant") != tenant:
            raise APIError(404, f"No such object: {obj_id}" if shape == "openai" else f"{obj_id} not found",
                           code="not_found")
        return spec, who, row[2], row[3]

    def spec_for(self, model: Any, provider: str, where: str) -> ModelSpec:
        spec = self.lane.ctx.models.get(model) if isinstance(model, str) else None
        if spec is None or spec.provider != provider:
            raise APIError(400 if spec else 404, f"{where}: the model {model!r} is not a configured {provider} model.",
                           param=where)
        return spec

    async def send(self, spec: ModelSpec, method: str, url: str, request: Request | None, **kw: Any
                   ) -> tuple[int, bytes]:
        key = client_key(request.headers) if request is not None else None
        status, content, _ = await self.lane.client.request(method, url, headers_for(spec, key), **kw)
        return status, content

    # -- OpenAI ---------------------------------------------------------------------------------------------
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
                line_spec = self.spec_for(body.get("model"), "openai", f"line {n}: body.model")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise APIError(400, f"line {n}: not a batch line ({{custom_id, method, url, body}}).") from exc
            if spec is not None and (line_spec.base_url, line_spec.api_key) != (spec.base_url, spec.api_key):
                raise APIError(400, f"line {n}: {line_spec.name} is served by another upstream than "
                                    f"{spec.name}; one batch goes to one provider account.")
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
            await self.remember(orjson.loads(got)["id"], "file", spec, _who(request, models))
        return Response(got, status_code=status, media_type="application/json")

    async def get_file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        spec, _, _, _ = await self.known(file_id, tenant_of(request.headers), "openai")
        status, got = await self.send(spec, "GET", f"{spec.base_url}/files/{file_id}", request)
        return Response(got, status_code=status, media_type="application/json")

    async def file_content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        spec, who, _, _ = await self.known(file_id, tenant_of(request.headers), "openai")
        status, got = await self.send(spec, "GET", f"{spec.base_url}/files/{file_id}/content", request)
        if status == 200:
            got = _rename_models(got, who.get("models") or {})
        return Response(got, status_code=status, media_type="application/jsonl")

    async def create_batch(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        file_id = body.get("input_file_id") if isinstance(body, dict) else None
        spec, who, _, _ = await self.known(str(file_id), tenant_of(request.headers), "openai")
        status, got = await self.send(spec, "POST", spec.base_url + "/batches", request, json=body)
        if status == 200:
            await self.remember(orjson.loads(got)["id"], "batch", spec, _who(request, who.get("models") or {}))
        return Response(got, status_code=status, media_type="application/json")

    async def get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, _, recorded = await self.known(batch_id, tenant_of(request.headers), "openai")
        status, got = await self.send(spec, "GET", f"{spec.base_url}/batches/{batch_id}", request)
        if status == 200:
            await self.on_openai_status(batch_id, spec, who, orjson.loads(got), recorded, request)
        return Response(got, status_code=status, media_type="application/json")

    async def on_openai_status(self, batch_id: str, spec: ModelSpec, who: dict[str, Any], batch: dict[str, Any],
                               recorded: int, request: Request | None) -> None:
        if batch.get("status") not in ENDED:
            return
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                await self.remember(batch[key], "output", spec, who)
        if not recorded:
            results: list[LineResult] = []
            for key in ("output_file_id", "error_file_id"):
                if batch.get(key):
                    status, content = await self.send(spec, "GET", f"{spec.base_url}/files/{batch[key]}/content",
                                                      request)
                    if status != 200:
                        return  # not readable now: recorded on a later look
                    results.extend(_openai_result(orjson.loads(raw), batch.get("endpoint", ""))
                                   for raw in content.splitlines() if raw.strip())
            await self.record(batch_id, spec, who, results)

    async def cancel_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, _, _, _ = await self.known(batch_id, tenant_of(request.headers), "openai")
        status, got = await self.send(spec, "POST", f"{spec.base_url}/batches/{batch_id}/cancel", request)
        return Response(got, status_code=status, media_type="application/json")

    async def list_batches(self, request: Request, provider: str) -> Response:
        """This tenant's batches (scrimp's own records, each with the provider's current state)."""
        tenant = tenant_of(request.headers)
        kind = "batch" if provider == "openai" else "msgbatch"
        rows = await asyncio.to_thread(self.store.db.execute, "SELECT id FROM batch_passthrough WHERE kind = ? "
                                       "ORDER BY created DESC", (kind,), "all")
        data = []
        limit = int(request.query_params.get("limit", 20))
        for (obj_id,) in rows:
            try:
                spec, _, _, _ = await self.known(obj_id, tenant, provider)
            except APIError:
                continue
            url = (f"{spec.base_url}/batches/{obj_id}" if provider == "openai"
                   else f"{anthropic_root(spec)}/messages/batches/{obj_id}")
            status, got = await self.send(spec, "GET", url, request)
            if status == 200:
                obj = orjson.loads(got)
                if provider == "anthropic":
                    obj = self._local_results_url(obj, request)
                data.append(obj)
            if len(data) >= limit:
                break
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        if provider == "openai":
            return JSONResponse({"object": "list", "data": data, "first_id": first, "last_id": last,
                                 "has_more": False})
        return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})

    # -- Anthropic ----------------------------------------------------------------------------------------
    def _local_results_url(self, obj: dict[str, Any], request: Request) -> dict[str, Any]:
        if obj.get("results_url"):  # the SDK reads results from here: through scrimp, not straight upstream
            obj["results_url"] = f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{obj['id']}/results"
        return obj

    async def create_message_batch(self, request: Request) -> Response:
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
            line_spec = self.spec_for(params.get("model"), "anthropic", f"requests.{i}.params.model")
            if spec is not None and (line_spec.base_url, line_spec.api_key) != (spec.base_url, spec.api_key):
                raise APIError(400, f"requests.{i}: {line_spec.name} is served by another upstream than {spec.name}.")
            spec = spec or line_spec
            models[line_spec.remote_name] = line_spec.name
            item["params"] = {**params, "model": line_spec.remote_name}
        assert spec is not None
        status, got = await self.send(spec, "POST", anthropic_root(spec) + "/messages/batches", request, json=body)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        obj = orjson.loads(got)
        await self.remember(obj["id"], "msgbatch", spec, _who(request, models))
        return JSONResponse(self._local_results_url(obj, request))

    async def get_message_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, _, recorded = await self.known(batch_id, tenant_of(request.headers), "anthropic")
        status, got = await self.send(spec, "GET", f"{anthropic_root(spec)}/messages/batches/{batch_id}", request)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        obj = orjson.loads(got)
        if obj.get("processing_status") == "ended" and not recorded:
            await self.record_anthropic(batch_id, spec, who, request)
        return JSONResponse(self._local_results_url(obj, request))

    async def record_anthropic(self, batch_id: str, spec: ModelSpec, who: dict[str, Any],
                               request: Request | None) -> bytes | None:
        status, content = await self.send(spec, "GET", f"{anthropic_root(spec)}/messages/batches/{batch_id}/results",
                                          request)
        if status != 200:
            return None
        results = [anthropic_line(orjson.loads(raw), "") for raw in content.splitlines() if raw.strip()]
        await self.record(batch_id, spec, who, results)
        return content

    async def message_batch_results(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, who, _, _ = await self.known(batch_id, tenant_of(request.headers), "anthropic")
        content = await self.record_anthropic(batch_id, spec, who, request)
        if content is None:
            status, got = await self.send(spec, "GET", f"{anthropic_root(spec)}/messages/batches/{batch_id}/results",
                                          request)
            return Response(got, status_code=status, media_type="application/json")
        return Response(_rename_models(content, who.get("models") or {}), media_type="application/x-jsonl")

    async def cancel_message_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        spec, _, _, _ = await self.known(batch_id, tenant_of(request.headers), "anthropic")
        status, got = await self.send(spec, "POST", f"{anthropic_root(spec)}/messages/batches/{batch_id}/cancel",
                                      request)
        if status != 200:
            return Response(got, status_code=status, media_type="application/json")
        return JSONResponse(self._local_results_url(orjson.loads(got), request))

    # -- the ledger -----------------------------------------------------------------------------------------
    async def record(self, batch_id: str, spec: ModelSpec, who: dict[str, Any], results: list[LineResult]) -> bool:
        """Every line of a finished batch into the ledger, with the batch's recorded mark: one transaction."""
        models = who.get("models") or {}
        rows: list[tuple[str, dict[str, Any]]] = []
        for r in results:
            served = models.get(r.response.model, r.response.model) if r.response is not None else spec.name
            served = served or spec.name
            call = Call(_empty(served), Attribution(who.get("tenant") or "default", who.get("user"),
                                                   who.get("feature")), request_id=f"{batch_id}:{r.custom_id}")
            if who.get("key"):
                k = who["key"]
                call.key = CallerKey(id=k[0], tenant=k[1], name=k[2], feature=k[3])
            call.decisions.update({"batch": batch_id, "custom_id": r.custom_id, "endpoint": "batch"})
            if r.response is not None:
                r.response.model = served
            rows.extend(recorder.rows_for(call, r.response, served, spec.provider, shared=False, error=r.error))

        def work(cur: Any) -> bool:
            cur.execute(self.store.q("UPDATE batch_passthrough SET recorded = 1 WHERE id = ? AND recorded = 0"),
                        (batch_id,))
            if cur.rowcount != 1:
                return False
            recorder.insert_rows(self.store, cur, rows, self.lane.ctx.ledger)
            return True
        if not await asyncio.to_thread(self.store.tx, work):
            return False
        recorder.committed(self.lane.ctx.ledger, rows)
        return True


def _empty(model: str) -> Any:
    from scrimp.canonical import ChatRequest

    return ChatRequest(model=model, messages=[])


def _openai_result(line: dict[str, Any], endpoint: str) -> LineResult:
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


def _rename_models(content: bytes, models: dict[str, str]) -> bytes:
    """Results as the client named its models (the provider answered with its own names)."""
    if not any(remote != name for remote, name in models.items()):
        return content
    out = []
    for raw in content.splitlines():
        if not raw.strip():
            continue
        line = orjson.loads(raw)
        for holder in ((line.get("response") or {}).get("body"), (line.get("result") or {}).get("message")):
            if isinstance(holder, dict) and holder.get("model") in models:
                holder["model"] = models[holder["model"]]
        out.append(orjson.dumps(line))
    return b"\n".join(out) + b"\n"


async def poll(lane: BatchStage) -> None:
    """The worker's look at unrecorded passthrough batches, so their lines are billed even if never retrieved."""
    rows = await asyncio.to_thread(lane.store.db.execute, "SELECT id, kind, model, who FROM batch_passthrough "
                                   "WHERE kind IN ('batch', 'msgbatch') AND recorded = 0", (), "all")
    now = time.time()
    p = Passthrough(lane)
    for batch_id, kind, model, who_raw in rows:
        spec = lane.ctx.models.get(model)
        if spec is None or not spec.api_key or now - _polled.get(batch_id, 0) < lane.options.poll_s:
            continue
        _polled[batch_id] = now
        who = orjson.loads(who_raw)
        try:
            if kind == "msgbatch":
                status, got = await p.send(spec, "GET", f"{anthropic_root(spec)}/messages/batches/{batch_id}", None)
                if status == 200 and orjson.loads(got).get("processing_status") == "ended":
                    await p.record_anthropic(batch_id, spec, who, None)
            else:
                status, got = await p.send(spec, "GET", f"{spec.base_url}/batches/{batch_id}", None)
                if status == 200:
                    await p.on_openai_status(batch_id, spec, who, orjson.loads(got), 0, None)
        except Exception:
            log.exception("could not look at passthrough batch %s", batch_id)


def routes(lane: BatchStage) -> list[Route]:
    p = Passthrough(lane)

    def wrap(method: Any, shape: str) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await method(request)
            except APIError as exc:
                return _err(exc, shape)
            except (orjson.JSONDecodeError, aiohttp.ClientError) as exc:
                return _err(APIError(502 if isinstance(exc, aiohttp.ClientError) else 400, str(exc)), shape)
        return endpoint

    async def list_openai(request: Request) -> Response:
        return await p.list_batches(request, "openai")

    async def list_anthropic(request: Request) -> Response:
        return await p.list_batches(request, "anthropic")

    return [
        Route("/v1/files", wrap(p.upload, "openai"), methods=["POST"]),
        Route("/v1/files/{file_id}", wrap(p.get_file, "openai"), methods=["GET"]),
        Route("/v1/files/{file_id}/content", wrap(p.file_content, "openai"), methods=["GET"]),
        Route("/v1/batches", wrap(p.create_batch, "openai"), methods=["POST"]),
        Route("/v1/batches", wrap(list_openai, "openai"), methods=["GET"]),
        Route("/v1/batches/{batch_id}", wrap(p.get_batch, "openai"), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", wrap(p.cancel_batch, "openai"), methods=["POST"]),
        Route("/v1/messages/batches", wrap(p.create_message_batch, "anthropic"), methods=["POST"]),
        Route("/v1/messages/batches", wrap(list_anthropic, "anthropic"), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", wrap(p.get_message_batch, "anthropic"), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", wrap(p.cancel_message_batch, "anthropic"), methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", wrap(p.message_batch_results, "anthropic"), methods=["GET"]),
    ]
