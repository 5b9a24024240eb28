"""Cascade checks: is the cheap model's answer acceptable, or must the request go to the stronger model?

Each check returns None when the answer passes, or a short reason when it fails (recorded in the ledger's
decisions). `verifier` is configurable: a regular expression the answer must match, a minimum length, or
both."""

from __future__ import annotations

import re
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse

REFUSAL = re.compile(r"\b(I(?:'m| am) (?:sorry|unable|not able)|I can(?:no|')t (?:help|assist|answer|do that)|"
                     r"as an AI(?: language model)?|I won't be able)\b", re.IGNORECASE)


def answer_text(resp: ChatResponse) -> str:
    return "".join(b.get("text", "") for b in resp.content if b.get("type") == "text")


def fits_schema(value: Any, schema: dict[str, Any]) -> bool:
    """The JSON-schema subset structured outputs use: type, properties, required, items, enum."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in types and not isinstance(value, types[kind]):
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(fits_schema(v, props[k]) for k, v in value.items() if k in props)
    if isinstance(value, list) and "items" in schema:
        return all(fits_schema(v, schema["items"]) for v in value)
    return True


def check_json(req: ChatRequest, resp: ChatResponse, **_: Any) -> str | None:
    fmt = req.response_format or {}
    if fmt.get("type") not in ("json_object", "json_schema"):
        return None
    try:
        value = orjson.loads(answer_text(resp))
    except orjson.JSONDecodeError:
        return "invalid_json"
    schema = (fmt.get("json_schema") or {}).get("schema")
    if schema and not fits_schema(value, schema):
        return "schema_mismatch"
    return None


def check_nonempty(req: ChatRequest, resp: ChatResponse, **_: Any) -> str | None:
    if any(b.get("type") == "tool_use" for b in resp.content):
        return None
    return None if answer_text(resp).strip() else "empty"


def check_truncated(req: ChatRequest, resp: ChatResponse, **_: Any) -> str | None:
    return "truncated" if resp.stop_reason == "max_tokens" else None


def check_refusal(req: ChatRequest, resp: ChatResponse, **_: Any) -> str | None:
    return "refusal" if REFUSAL.search(answer_text(resp)[:400]) else None


def check_verifier(req: ChatRequest, resp: ChatResponse, *, pattern: str | None = None, min_chars: int = 0,
                   **_: Any) -> str | None:
    text = answer_text(resp)
    if len(text.strip()) < min_chars:
        return "too_short"
    if pattern and not re.search(pattern, text, re.IGNORECASE | re.DOTALL):
        return "verifier"
    return None


CHECKS = {"json": check_json, "nonempty": check_nonempty, "truncated": check_truncated, "refusal": check_refusal,
          "verifier": check_verifier}
DEFAULT_CHECKS = ["json", "nonempty", "truncated", "refusal"]


def first_failure(names: list[str], req: ChatRequest, resp: ChatResponse, verifier: dict[str, Any]) -> str | None:
    for name in names:
        reason = CHECKS[name](req, resp, **(verifier if name == "verifier" else {}))
        if reason:
            return reason
    return None
