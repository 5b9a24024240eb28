"""Who and what a call is for: tenant, user, feature — from scrimp headers or the APIs' own fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from scrimp.canonical import ChatRequest
from scrimp.pipeline import Attribution, CallerKey


def client_key(headers: Mapping[str, str]) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key", "").strip()


# Set only by the auth guard (scrimp.auth), which removes any a client sends: the tenant of a key that may name
# tenants, for a request that names none. (A key bound to a tenant has its `x-scrimp-tenant` replaced instead, so
# every tenant-scoped read below, the stages' included, sees the key's tenant whatever the request said.)
KEY_TENANT = "x-scrimp-key-tenant"
SCOPE_KEY = "scrimp.key"  # the ASGI scope entry holding the resolved gateway key (pipeline.CallerKey)


def caller_key(scope: Mapping[str, Any]) -> CallerKey | None:
    """The gateway key the auth guard resolved for this request, or None (auth off, or no gateway key)."""
    return scope.get(SCOPE_KEY)


def tenant_of(headers: Mapping[str, str], meta: dict | None = None) -> str:
    tenant = headers.get("x-scrimp-tenant") or _str((meta or {}).get("tenant")) or headers.get(KEY_TENANT)
    if not tenant:
        # No tenant named: derive it from the caller's credentials (a hash, never the key itself), so two
        # callers never share cached answers unless configured to.
        key = client_key(headers)
        tenant = key_tenant(key) if key else "anonymous"
    return tenant


@lru_cache(maxsize=4096)
def key_tenant(key: str) -> str:
    """The tenant of a caller that named none: a hash of its key (callers repeat, so it is kept)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def plain_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """An ASGI scope's headers as one dict with lower-case names (read once; a request's headers are looked
    up about ten times on its way, and each lookup in Starlette's `Headers` is a scan)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


def attribute(headers: Mapping[str, str], req: ChatRequest) -> Attribution:
    meta = req.metadata if isinstance(req.metadata, dict) else {}
    tenant = tenant_of(headers, meta)
    user = headers.get("x-scrimp-user") or req.user or _str(meta.get("user_id"))
    feature = headers.get("x-scrimp-feature") or _str(meta.get("feature"))
    return Attribution(tenant=tenant, user=user, feature=feature, tags=tags_of(headers))


TAG_PREFIX = "x-scrimp-tag-"


def tags_of(headers: Mapping[str, str]) -> dict[str, str]:
    """`x-scrimp-tag-<name>: <value>` headers (routing rules can match them; names are lower-case)."""
    return {k[len(TAG_PREFIX):]: v for k, v in headers.items() if k.startswith(TAG_PREFIX) and len(k) > len(TAG_PREFIX)}


HINT_PREFIX = "x-scrimp-"


def hints_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's per-call instructions to levers (`Call.hints`): its x-scrimp-* headers and
    `idempotency-key`, never a credential."""
    return {k: v for k, v in headers.items()
            if (k.startswith(HINT_PREFIX) and k != KEY_TENANT) or k == "idempotency-key"}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
