"""Canonical requests and responses as JSON for the log, and back (what `scrimp simulate` replays)."""

from __future__ import annotations

import dataclasses
from typing import Any

from scrimp.canonical import ChatRequest, ChatResponse, Usage

_REQUEST_FIELDS = [f.name for f in dataclasses.fields(ChatRequest) if f.name != "native"]


def request_to_json(req: ChatRequest) -> dict[str, Any]:
    return {name: getattr(req, name) for name in _REQUEST_FIELDS}


def request_from_json(data: dict[str, Any]) -> ChatRequest:
    return ChatRequest(**{k: v for k, v in data.items() if k in _REQUEST_FIELDS})


def response_to_json(resp: ChatResponse) -> dict[str, Any]:
    return {"id": resp.id, "model": resp.model, "content": resp.content, "stop_reason": resp.stop_reason,
            "usage": dataclasses.asdict(resp.usage),
            "extra_choices": [[blocks, stop] for blocks, stop in resp.extra_choices]}


def response_from_json(data: dict[str, Any]) -> ChatResponse:
    return ChatResponse(id=data.get("id", ""), model=data.get("model", ""), content=data.get("content") or [],
                        stop_reason=data.get("stop_reason"), usage=Usage(**(data.get("usage") or {})),
                        extra_choices=[(b, s) for b, s in data.get("extra_choices") or []])


def final_user_text(request_json: dict[str, Any]) -> str:
    """The last user turn's text of a (redacted) request body."""
    for msg in reversed(request_json.get("messages") or []):
        if msg.get("role") == "user":
            return "\n".join(b.get("text", "") for b in msg.get("content") or []
                             if isinstance(b, dict) and b.get("type") == "text")
    return ""


def answer_text(response_json: dict[str, Any] | None) -> str:
    if not response_json:
        return ""
    return "".join(b.get("text", "") for b in response_json.get("content") or []
                   if isinstance(b, dict) and b.get("type") == "text")


def cap_strings(data: Any, max_bytes: int, size: int) -> tuple[Any, bool]:
    """Shorten the longest strings until the body fits `max_bytes` (JSON-encoded `size` now); True if cut."""
    import orjson

    if size <= max_bytes:
        return data, False
    limit = max(64, max_bytes // 2)
    while True:
        cut = _cut(data, limit)
        if len(orjson.dumps(cut)) <= max_bytes or limit <= 64:
            return cut, True
        limit //= 2


def _cut(data: Any, limit: int) -> Any:
    if isinstance(data, str) and len(data) > limit:
        return data[:limit] + f"…[{len(data) - limit} chars cut]"
    if isinstance(data, list):
        return [_cut(v, limit) for v in data]
    if isinstance(data, dict):
        return {k: _cut(v, limit) for k, v in data.items()}
    return data
