"""Summaries of conversation prefixes, made once by a cheap model through the pipeline's upstream and reused.

A summary is stored under the digest of the exact prefix it covers (tenant, feature, system prompt, and the
messages before the checkpoint), so every later turn of that conversation finds it and sends the same text: the
trimmed prefix stays byte-identical and keeps hitting the provider's prompt cache. A new checkpoint's summary is
made from the previous checkpoint's summary plus the messages since (the model never re-reads the whole
conversation). Concurrent requests for the same prefix wait for one call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from scrimp.canonical import ChatRequest
from scrimp.trim.history import message_text

INSTRUCTION = ("You maintain a running summary of a conversation. Write a concise summary (at most {words} words) "
               "of the conversation so far: who the participants are, facts stated, decisions, open questions, "
               "dates and numbers. Plain prose, no preamble.")


def _clean(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}  # clients move breakpoints turn to turn


def prefix_digests(scope: str, messages: list[dict[str, Any]]) -> list[bytes]:
    """digests[i]: the digest of `scope` and messages[:i] (a hash chain, one pass)."""
    h = hashlib.sha256(scope.encode()).digest()
    out = [h]
    for msg in messages:
        body = orjson.dumps([msg["role"], [_clean(b) for b in msg["content"]]])
        h = hashlib.sha256(h + body).digest()
        out.append(h)
    return out


class SummaryStore:
    """Summaries by prefix digest, least recently used forgotten past `max_items`."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[bytes, str] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[str]] = {}

    def get(self, key: bytes) -> str | None:
        text = self._items.get(key)
        if text is not None:
            self._items.move_to_end(key)
        return text

    def put(self, key: bytes, text: str) -> None:
        self._items[key] = text
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    async def once(self, key: bytes, make: Any) -> str:
        """The stored summary, or the one `make()` produces; concurrent callers share one `make()`."""
        found = self.get(key)
        if found is not None:
            return found
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            text = await make()
            self.put(key, text)
            future.set_result(text)
            return text
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._pending.pop(key, None)


def summary_request(model: str, previous: str | None, messages: list[dict[str, Any]], max_tokens: int) -> ChatRequest:
    """The request a cheap model summarises `messages` with (continuing `previous`)."""
    lines = [f"{m['role']}: {message_text(m)}" for m in messages if message_text(m).strip()]
    parts = []
    if previous:
        parts.append(f"Summary so far:\n{previous}\n")
    parts.append("Conversation" + (" since then" if previous else "") + ":\n" + "\n".join(lines))
    parts.append("\nWrite the updated summary.")
    return ChatRequest(model=model, max_tokens=max_tokens, temperature=0.0,
                       system=[{"type": "text", "text": INSTRUCTION.format(words=max(20, int(max_tokens * 0.7)))}],
                       messages=[{"role": "user", "content": [{"type": "text", "text": "\n".join(parts)}]}])
