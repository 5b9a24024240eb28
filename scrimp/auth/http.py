"""Key management over HTTP (admin endpoints: the guard lets only the admin key through).

    GET  /v1/scrimp/keys                  every key (database and config), never a secret
    POST /v1/scrimp/keys                  {"tenant", "name"?, "feature"?, "may_set_tenant"?, "budget_usd"?,
                                           "period"?} -> the new key, shown once ("key")
    POST /v1/scrimp/keys/{key_id}/revoke  revoke a database key

Errors in OpenAI's shape (an `anthropic-version` header gets Anthropic's)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scrimp.auth.keys import check_name
from scrimp.auth.resolver import KeyResolver
from scrimp.formats.errors import APIError
from scrimp.pipeline import new_request_id

PREFIX = "/v1/scrimp/keys"


def _error(request: Request, exc: APIError) -> Response:
    shape = "anthropic" if request.headers.get("anthropic-version") else "openai"
    return JSONResponse(exc.body(shape), status_code=exc.status, headers={"x-scrimp-request-id": new_request_id()})


def routes(resolver: KeyResolver) -> list[Route]:
    store = resolver.store

    async def list_keys(request: Request) -> Response:
        try:
            keys = await asyncio.to_thread(resolver.listed)
        except Exception as exc:  # noqa: BLE001 - the database is down: say so in the API's shape
            return _error(request, APIError(503, f"the key store cannot be read: {type(exc).__name__}"))
        return JSONResponse({"object": "list", "data": [k.public() for k in keys]})

    async def create_key(request: Request) -> Response:
        try:
            spec = _create_spec(await request.body())
            if store is None:
                raise APIError(400, "This gateway keeps no keys in a database (no ledger stage with a file or a "
                                    "DSN): list them in the config's auth.keys.")
            secret, rec = await asyncio.to_thread(lambda: store.create(**spec))
        except APIError as exc:
            return _error(request, exc)
        resolver.forget(rec.key_sha256)  # an unknown-key answer this replica cached for it must not stand
        return JSONResponse({**rec.public(), "key": secret}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        key_id = request.path_params["key_id"]
        if any(k.id == key_id for k in resolver.config_keys.values()):
            return _error(request, APIError(400, f"Key {key_id} is listed in the config: remove it from auth.keys "
                                                 "to revoke it."))
        rec = await asyncio.to_thread(store.revoke, key_id) if store is not None else None
        if rec is None:
            return _error(request, APIError(404, f"No key with id '{key_id}'."))
        resolver.forget(rec.key_sha256)  # this replica at once; the others within key_cache_ttl_s
        return JSONResponse({**rec.public(), "revoked": True})

    return [Route(PREFIX, list_keys, methods=["GET"]), Route(PREFIX, create_key, methods=["POST"]),
            Route(PREFIX + "/{key_id}/revoke", revoke_key, methods=["POST"])]


def _create_spec(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    allowed = {"tenant", "name", "feature", "may_set_tenant", "budget_usd", "period"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(400, f"Unknown parameter: '{unknown[0]}' (accepted: {', '.join(sorted(allowed))}).",
                       param=unknown[0])
    tenant = body.get("tenant")
    if not isinstance(tenant, str):
        raise APIError(400, "Missing required parameter: 'tenant'.", param="tenant")
    for field in ("name", "feature", "period"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise APIError(400, f"Invalid type for '{field}': expected a string.", param=field)
    try:
        check_name(tenant, "tenant")
        if body.get("feature") is not None:
            check_name(body["feature"], "feature")
    except ValueError as exc:
        raise APIError(400, str(exc)) from exc
    may_set = body.get("may_set_tenant", False)
    if not isinstance(may_set, bool):
        raise APIError(400, "Invalid type for 'may_set_tenant': expected a boolean.", param="may_set_tenant")
    budget, period = body.get("budget_usd"), body.get("period")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0):
        raise APIError(400, "Invalid 'budget_usd': expected a positive number.", param="budget_usd")
    if (budget is None) != (period is None) or period not in (None, "day", "month"):
        raise APIError(400, "'budget_usd' and 'period' (day or month) go together.", param="period")
    return {"tenant": tenant, "name": body.get("name"), "feature": body.get("feature"), "may_set_tenant": may_set,
            "budget_usd": float(budget) if budget is not None else None, "budget_period": period}
