"""Who and what a call is for: tenant, user, feature — from scrimp headers or the APIs' own fields."""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers

from scrimp.canonical import ChatRequest
from scrimp.pipeline import Attribution


def client_key(headers: Headers) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key", "").strip()


def tenant_of(headers: Headers, meta: dict | None = None) -> str:
    tenant = headers.get("x-scrimp-tenant") or _str((meta or {}).get("tenant"))
    if not tenant:
        # No tenant named: derive it from the caller's credentials (a hash, never the key itself), so two
        # callers never share cached answers unless configured to.
        key = client_key(headers)
        tenant = "key-" + hashlib.sha256(key.encode()).hexdigest()[:16] if key else "anonymous"
    return tenant


def attribute(headers: Headers, req: ChatRequest) -> Attribution:
    meta = req.metadata if isinstance(req.metadata, dict) else {}
    tenant = tenant_of(headers, meta)
    user = headers.get("x-scrimp-user") or req.user or _str(meta.get("user_id"))
    feature = headers.get("x-scrimp-feature") or _str(meta.get("feature"))
    return Attribution(tenant=tenant, user=user, feature=feature, tags=tags_of(headers))


TAG_PREFIX = "x-scrimp-tag-"


def tags_of(headers: Headers) -> dict[str, str]:
    """`x-scrimp-tag-<name>: <value>` headers (routing rules can match them; names are lower-case)."""
    return {k[len(TAG_PREFIX):]: v for k, v in headers.items() if k.startswith(TAG_PREFIX) and len(k) > len(TAG_PREFIX)}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
