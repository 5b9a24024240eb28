"""What the audit keeps of a logged call: the few facts its checks read, taken from the bodies as the log is read,
so the bodies themselves (tens of KB for a long conversation) are not held for the whole period."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from scrimp.tokens import block_text, count_tokens

KEEP_MESSAGES = 6  # the last turns a trimmer keeps whole
TOOL_OUTPUT_KEEP = 500  # tokens of a tool output a trimmer keeps
_BOOKKEEPING = ("stream", "include_usage", "user", "metadata", "inbound")
_systems: dict[str, str] = {}  # one string per distinct system prompt (a stable prompt is held once)


def request_key(body: dict[str, Any]) -> bytes:
    """What the exact cache keys on, roughly: the request without streaming and bookkeeping fields (a digest)."""
    kept = {k: v for k, v in body.items() if k not in _BOOKKEEPING}
    return hashlib.blake2b(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def trimmable(body: dict[str, Any]) -> tuple[int, int]:
    """(trimmable tokens, all message tokens) of a request: turns older than the last KEEP_MESSAGES, and tool
    outputs beyond their first TOOL_OUTPUT_KEEP tokens."""
    messages = body.get("messages") or []
    total = cut = 0
    for i, msg in enumerate(messages):
        old = i < len(messages) - KEEP_MESSAGES
        for block in msg.get("content") or []:
            n = count_tokens(block_text(block)) if isinstance(block, dict) else 0
            total += n
            if old:
                cut += n
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                cut += max(0, n - TOOL_OUTPUT_KEEP)
    return cut, total


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    body = entry.get("request_json") or {}
    system = "\n".join(b.get("text", "") for b in body.get("system") or [] if isinstance(b, dict))
    return {
        "request_id": entry["request_id"], "prompt_text": entry.get("prompt_text") or "",
        "answer_text": entry.get("answer_text") or "", "key": request_key(body),
        "temperature": body.get("temperature"), "max_tokens": body.get("max_tokens"),
        "deterministic": body.get("temperature") == 0 or body.get("seed") is not None,
        "system": _systems.setdefault(system, system) if system else "",
        "trimmable": trimmable(body),
    }
