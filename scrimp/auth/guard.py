"""The HTTP guard: an ASGI middleware in front of every gateway endpoint, mounted when the config has `auth:`.

For each request it reads the key where clients put their API key (`Authorization: Bearer` for OpenAI
clients, `x-api-key` for Anthropic clients) and decides:

- admin endpoints (router status and reset, key management, `/metrics` with `protect_metrics`, and every stage
  route its stage does not list in `caller_paths`) need the admin key: 401 without a key or with an unknown
  one, 403 with a gateway key;
- every other endpoint, with `required: true`, needs a valid gateway key (known, not revoked): 401 otherwise,
  in the caller's API shape. Without `required`, a request with no gateway key is served as before;
- a request with a valid gateway key goes on with its identity fixed: the key is removed from the request (the
  provider keys come from the config, never from the client), `x-scrimp-tenant` is replaced by the key's tenant
  (unless the key may name tenants: then the key's tenant is only the default), `x-scrimp-feature` by the key's
  feature if it has one, and the key itself (`pipeline.CallerKey`) is put in the ASGI scope for the call. Every
  tenant-scoped read in the gateway and the stages goes through those headers (`attribution.tenant_of`), so a
  header or body field naming another tenant changes nothing.

`/healthz` and the paths stages list in `open_paths` (the dashboard's page and scripts, which hold no data) are
always open; `/metrics` is open unless `protect_metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match

from scrimp.attribution import KEY_TENANT, SCOPE_KEY
from scrimp.auth.keys import PREFIX, KeyRecord
from scrimp.auth.resolver import KeyResolver, KeyStoreUnavailable
from scrimp.formats.errors import APIError
from scrimp.pipeline import new_request_id

OPEN_PATHS = frozenset({"/healthz"})
_AUTHORIZATION, _X_API_KEY = b"authorization", b"x-api-key"
_TENANT, _FEATURE, _KEY_TENANT = b"x-scrimp-tenant", b"x-scrimp-feature", KEY_TENANT.encode()


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The key a client sent: `Authorization: Bearer <key>` (OpenAI clients), else `x-api-key` (Anthropic)."""
    bearer = api_key = ""
    seen: set[bytes] = set()
    for name, value in headers:
        name = name.lower()
        if name in (_AUTHORIZATION, _X_API_KEY):
            if name in seen:  # parsers disagree on which of two copies counts: refuse rather than guess
                raise _refuse(400, f"The request has more than one '{name.decode()}' header.", "duplicate_header")
            seen.add(name)
        if name == _AUTHORIZATION:
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                bearer = text[7:].strip()
        elif name == _X_API_KEY:
            api_key = value.decode("latin-1").strip()
    return bearer or api_key


def _shape(scope: dict[str, Any]) -> str:
    """Anthropic's error shape for /v1/messages* or a request with an `anthropic-version` header."""
    if scope["path"].startswith("/v1/messages"):
        return "anthropic"
    return "anthropic" if any(k.lower() == b"anthropic-version" for k, _ in scope["headers"]) else "openai"


class Binding:
    """What a valid key does to a request, worked out once per key: the headers it removes and sets."""

    __slots__ = ("add", "caller", "drop")

    def __init__(self, rec: KeyRecord) -> None:
        self.caller = rec.caller()
        tenant = rec.tenant.encode("latin-1")
        self.drop = {_AUTHORIZATION, _X_API_KEY, _KEY_TENANT}
        if rec.may_set_tenant:
            self.add = [(_KEY_TENANT, tenant)]  # the default when the request names no tenant
        else:
            self.drop.add(_TENANT)
            self.add = [(_TENANT, tenant)]
        if rec.feature:
            self.drop.add(_FEATURE)
            self.add.append((_FEATURE, rec.feature.encode("latin-1")))

    def apply(self, scope: dict[str, Any]) -> dict[str, Any]:
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() not in self.drop] + self.add
        scope[SCOPE_KEY] = self.caller
        return scope


def _strip(scope: dict[str, Any], names: frozenset[bytes]) -> dict[str, Any]:
    if not any(k.lower() in names for k, _ in scope["headers"]):
        return scope
    scope = dict(scope)
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() not in names]
    return scope


_RESERVED = frozenset({_KEY_TENANT})
_CREDENTIALS = frozenset({_AUTHORIZATION, _X_API_KEY, _KEY_TENANT})

MISSING = ("This gateway needs a scrimp key: send it as 'Authorization: Bearer <key>' (OpenAI clients) or "
           "'x-api-key: <key>' (Anthropic clients).")


class AuthGuard:
    def __init__(self, app: Any, resolver: KeyResolver, admin_routes: list[BaseRoute], required: bool,
                 protect_metrics: bool, refused: Counter[str], open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.open_paths = OPEN_PATHS | open_paths  # stages' `open_paths`: pages holding no data
        self.resolver = resolver
        self.admin_routes = admin_routes
        self.required = required
        self.protect_metrics = protect_metrics
        # admin endpoints are closed (admin key) once an admin key is configured or keys are required
        self.admin_closed = required or resolver.has_admin
        self._bindings: dict[str, tuple[KeyRecord, Binding]] = {}  # key id -> (its record, what it does)
        self.refused = refused  # reason (the error code) -> requests refused, for /metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or (
                scope["path"] == "/metrics" and not self.protect_metrics):
            await self.app(scope, receive, send)
            return
        try:
            scope = await self._admit(scope)
        except APIError as exc:
            self.refused[exc.code or str(exc.status)] += 1
            headers = {**exc.headers, "x-scrimp-request-id": new_request_id()}
            response = JSONResponse(exc.body(_shape(scope)), status_code=exc.status, headers=headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _is_admin_path(self, scope: dict[str, Any]) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.admin_routes)

    async def _admit(self, scope: dict[str, Any]) -> dict[str, Any]:
        """The request as the app should see it, or an APIError refusing it."""
        secret = presented_key(scope["headers"])
        if scope["path"] == "/metrics" or self._is_admin_path(scope):  # /metrics gets here with protect_metrics
            if not self.admin_closed:
                return _strip(scope, _RESERVED)  # no admin key and keys not required: open, as before
            if secret and self.resolver.is_admin(secret):
                return _strip(scope, _CREDENTIALS)
            if not secret:
                raise _refuse(401, "This is an admin endpoint: send the admin key (auth.admin_key) as "
                                   "'Authorization: Bearer <key>' or 'x-api-key: <key>'.", "missing_api_key")
            rec = await self._lookup(secret)
            if rec is not None and not rec.revoked:
                raise _refuse(403, "This is an admin endpoint: it needs the admin key (auth.admin_key), not a "
                                   "gateway key." if self.resolver.has_admin else
                                   "This is an admin endpoint and this gateway has no admin key (auth.admin_key).",
                              "admin_key_required")
            raise _invalid(rec, secret)
        if not secret:
            if self.required:
                raise _refuse(401, MISSING, "missing_api_key")
            return _strip(scope, _RESERVED)
        if self.resolver.is_admin(secret):  # never forwarded to a provider, never a tenant's key
            raise _refuse(403, "The admin key is for the admin endpoints only: call the model APIs with a gateway "
                               "key (scrimp keys create).", "admin_key_not_a_gateway_key")
        rec = await self._lookup(secret)
        if rec is None and not self.required and not secret.startswith(PREFIX):
            return _strip(scope, _RESERVED)  # not a gateway key: the caller's provider key, as before
        # (an unknown sk-scrimp- key is refused even then: it is never forwarded to a provider)
        if rec is None or rec.revoked:
            raise _invalid(rec, secret)
        known = self._bindings.get(rec.id)
        if known is None or known[0] is not rec:  # a record read again from the database may have changed
            known = self._bindings[rec.id] = (rec, Binding(rec))
        return known[1].apply(scope)

    async def _lookup(self, secret: str) -> KeyRecord | None:
        try:
            return await self.resolver.resolve(secret)
        except KeyStoreUnavailable as exc:
            raise APIError(503, "scrimp cannot check keys right now (its key store is unreachable); retry "
                                "shortly.", code="key_store_unavailable", headers={"retry-after": "1"}) from exc


def _refuse(status: int, message: str, code: str) -> APIError:
    return APIError(status, message, code=code)


def _invalid(rec: KeyRecord | None, secret: str) -> APIError:
    shown = secret[:6] + "..." if len(secret) > 12 else "***"
    if rec is not None and rec.revoked:
        return _refuse(401, f"This scrimp key ({rec.prefix}..., id {rec.id}) has been revoked.", "revoked_api_key")
    return _refuse(401, f"Incorrect API key provided: {shown}. This gateway takes scrimp keys only "
                        "(scrimp keys create).", "invalid_api_key")
