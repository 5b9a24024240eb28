"""What both providers' batch passthroughs share: which upstream holds an object and who made it (a row of
`batch_passthrough`), the provider call with the configured key, the tenant's list of batches, and the ledger rows
of a finished batch, written once with the batch's recorded mark."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scrimp.attribution import caller_key, client_key, plain_headers, tenant_of
from scrimp.batch import recorder
from scrimp.batch.providers import LineResult, headers_for
from scrimp.canonical import ChatRequest
from scrimp.formats.errors import APIError
from scrimp.models import ModelSpec
from scrimp.pipeline import Attribution, Call, CallerKey

if TYPE_CHECKING:
    from scrimp.batch.stage import BatchStage


def who_made(request: Request, models: dict[str, str]) -> dict[str, Any]:
    """The tenant, user, feature and key an object's lines are billed to, and its model names."""
    headers = plain_headers(request.scope["headers"])
    key = caller_key(request.scope)
    return {"tenant": tenant_of(headers), "user": headers.get("x-scrimp-user"),
            "feature": headers.get("x-scrimp-feature") or (key.feature if key else None),
            "key": [key.id, key.tenant, key.name, key.feature] if key is not None else None,
            "models": models}  # the provider's model name -> scrimp's


def rename_models(content: bytes, models: dict[str, str]) -> bytes:
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


class Passthrough:
    """One provider's Batch API through the gateway; subclasses give its endpoints."""

    provider = ""
    kind = ""  # the batch_passthrough kind of its batches

    def __init__(self, lane: BatchStage) -> None:
        self.lane = lane

    @property
    def store(self) -> Any:
        return self.lane.store

    def batch_url(self, spec: ModelSpec, batch_id: str) -> str:
        raise NotImplementedError

    def present(self, obj: dict[str, Any], request: Request) -> dict[str, Any]:
        """A provider's batch object as the client is shown it."""
        return obj

    async def poll_one(self, batch_id: str, spec: ModelSpec, who: dict[str, Any]) -> None:
        """The worker's look at an unrecorded batch: record it if it has ended."""
        raise NotImplementedError

    # -- bookkeeping ---------------------------------------------------------------------------------------
    async def remember(self, obj_id: str, kind: str, spec: ModelSpec, who: dict[str, Any]) -> None:
        def work(cur: Any) -> None:
            cur.execute(self.store.q("SELECT 1 FROM batch_passthrough WHERE id = ?"), (obj_id,))
            if cur.fetchone() is None:
                cur.execute(self.store.q("INSERT INTO batch_passthrough (id, kind, provider, model, who, created) "
                                         "VALUES (?, ?, ?, ?, ?, ?)"),
                            (obj_id, kind, spec.provider, spec.name, orjson.dumps(who).decode(), time.time()))
        await asyncio.to_thread(self.store.tx, work)

    async def known(self, obj_id: str, tenant: str) -> tuple[ModelSpec, dict[str, Any], int]:
        """(the model whose upstream holds it, who made it, whether its lines are recorded), or a 404 when this
        tenant did not make it."""
        row = await asyncio.to_thread(self.store.db.execute, "SELECT model, who, recorded FROM batch_passthrough "
                                      "WHERE id = ?", (obj_id,), "one")
        spec = self.lane.ctx.models.get(row[0]) if row else None
        who = orjson.loads(row[1]) if row else {}
        if spec is None or who.get("tenant") != tenant:
            raise APIError(404, f"No such object: {obj_id}" if self.provider == "openai" else f"{obj_id} not found",
                           code="not_found")
        return spec, who, row[2]

    def spec_for(self, model: Any, where: str) -> ModelSpec:
        spec = self.lane.ctx.models.get(model) if isinstance(model, str) else None
        if spec is None or spec.provider != self.provider:
            raise APIError(400 if spec else 404, f"{where}: the model {model!r} is not a configured {self.provider} "
                                                 "model.", param=where)
        return spec

    @staticmethod
    def same_account(spec: ModelSpec | None, other: ModelSpec, where: str) -> None:
        if spec is not None and (other.base_url, other.api_key) != (spec.base_url, spec.api_key):
            raise APIError(400, f"{where}: {other.name} is served by another upstream than {spec.name}; one batch "
                                "goes to one provider account.")

    async def send(self, spec: ModelSpec, method: str, url: str, request: Request | None, **kw: Any
                   ) -> tuple[int, bytes]:
        """A call to the provider with the configured key (the caller's own when the model has none)."""
        key = client_key(request.headers) if request is not None else None
        status, content, _ = await self.lane.client.request(method, url, headers_for(spec, key), **kw)
        return status, content

    async def list_batches(self, request: Request) -> Response:
        """This tenant's batches (scrimp's own records, each with the provider's current state)."""
        tenant = tenant_of(request.headers)
        rows = await asyncio.to_thread(self.store.db.execute, "SELECT id FROM batch_passthrough WHERE kind = ? "
                                       "ORDER BY created DESC", (self.kind,), "all")
        data = []
        limit = int(request.query_params.get("limit", 20))
        for (obj_id,) in rows:
            try:
                spec, _, _ = await self.known(obj_id, tenant)
            except APIError:
                continue
            status, got = await self.send(spec, "GET", self.batch_url(spec, obj_id), request)
            if status == 200:
                data.append(self.present(orjson.loads(got), request))
            if len(data) >= limit:
                break
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        if self.provider == "openai":
            return JSONResponse({"object": "list", "data": data, "first_id": first, "last_id": last,
                                 "has_more": False})
        return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})

    # -- the ledger -----------------------------------------------------------------------------------------
    async def record(self, batch_id: str, spec: ModelSpec, who: dict[str, Any], results: list[LineResult]) -> bool:
        """Every line of a finished batch into the ledger, with the batch's recorded mark: one transaction."""
        models = who.get("models") or {}
        rows: list[tuple[str, dict[str, Any]]] = []
        for r in results:
            served = models.get(r.response.model, r.response.model) if r.response is not None else spec.name
            served = served or spec.name
            call = Call(ChatRequest(model=served, messages=[]),
                        Attribution(who.get("tenant") or "default", who.get("user"), who.get("feature")),
                        request_id=f"{batch_id}:{r.custom_id}")
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
