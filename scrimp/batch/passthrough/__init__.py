"""The providers' own Batch APIs through scrimp: OpenAI Files + Batches (`openai_batches`) and Anthropic Message
Batches (`anthropic_batches`), with the official SDKs pointed at the gateway. Model names are mapped to the
provider's (and back in the results), the configured provider key is used, and each line is written to the ledger
once, at the batch rate, for the tenant / feature / key that created the batch, when its result is known: whether
the client retrieves the batch or its results once, many times or never (the worker polls what is unrecorded)."""

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

from scrimp.batch.passthrough.anthropic_batches import AnthropicBatches
from scrimp.batch.passthrough.openai_batches import OpenAIBatches
from scrimp.formats.errors import APIError
from scrimp.pipeline import new_request_id

if TYPE_CHECKING:
    from scrimp.batch.stage import BatchStage

log = logging.getLogger("scrimp.batch")
_polled: dict[str, float] = {}  # passthrough batch id -> when the worker last asked about it


def routes(lane: BatchStage) -> list[Route]:
    oa, an = OpenAIBatches(lane), AnthropicBatches(lane)

    def wrap(method: Any, shape: str) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await method(request)
            except APIError as exc:
                error = exc
            except orjson.JSONDecodeError as exc:
                error = APIError(400, f"The request body is not valid JSON: {exc}")
            except aiohttp.ClientError as exc:
                error = APIError(502, f"the provider could not be reached: {type(exc).__name__}")
            return JSONResponse(error.body(shape), status_code=error.status,
                                headers={"x-scrimp-request-id": new_request_id()})
        return endpoint

    return [
        Route("/v1/files", wrap(oa.upload, "openai"), methods=["POST"]),
        Route("/v1/files/{file_id}", wrap(oa.get_file, "openai"), methods=["GET"]),
        Route("/v1/files/{file_id}/content", wrap(oa.file_content, "openai"), methods=["GET"]),
        Route("/v1/batches", wrap(oa.create_batch, "openai"), methods=["POST"]),
        Route("/v1/batches", wrap(oa.list_batches, "openai"), methods=["GET"]),
        Route("/v1/batches/{batch_id}", wrap(oa.get_batch, "openai"), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", wrap(oa.cancel_batch, "openai"), methods=["POST"]),
        Route("/v1/messages/batches", wrap(an.create, "anthropic"), methods=["POST"]),
        Route("/v1/messages/batches", wrap(an.list_batches, "anthropic"), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", wrap(an.get, "anthropic"), methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", wrap(an.cancel, "anthropic"), methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", wrap(an.results, "anthropic"), methods=["GET"]),
    ]


async def poll(lane: BatchStage) -> None:
    """The worker's look at unrecorded passthrough batches, so their lines are billed even if never retrieved."""
    rows = await asyncio.to_thread(lane.store.db.execute, "SELECT id, kind, model, who FROM batch_passthrough "
                                   "WHERE kind IN ('batch', 'msgbatch') AND recorded = 0", (), "all")
    now = time.time()
    for done in set(_polled) - {row[0] for row in rows}:  # recorded since: forgotten
        del _polled[done]
    apis = {"batch": OpenAIBatches(lane), "msgbatch": AnthropicBatches(lane)}
    for batch_id, kind, model, who in rows:
        spec = lane.ctx.models.get(model)
        if spec is None or not spec.api_key or now - _polled.get(batch_id, 0) < lane.options.poll_s:
            continue
        _polled[batch_id] = now
        try:
            await apis[kind].poll_one(batch_id, spec, orjson.loads(who))
        except Exception:
            log.exception("could not look at passthrough batch %s", batch_id)
