"""Canonical stream events -> the Responses API's server-sent events, in the order OpenAI sends them.

    response.created, response.in_progress,
    per text block:  response.output_item.added (message), response.content_part.added,
                     response.output_text.delta..., response.output_text.done, response.content_part.done,
                     response.output_item.done
    per tool call:   response.output_item.added (function_call), response.function_call_arguments.delta...,
                     response.function_call_arguments.done, response.output_item.done
    response.completed (or response.incomplete when cut by max_output_tokens)

Every event carries a `sequence_number`. An item is closed when the next one starts or the answer ends (so its
final status is known); a failure after the first byte ends the stream with `error` and `response.failed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from scrimp.canonical import ChatResponse
from scrimp.formats.errors import APIError
from scrimp.formats.responses import call_item, finished, item_id, message_item, status_of
from scrimp.pipeline import StreamEvent


@dataclass
class _Open:
    kind: str  # "message" | "function_call"
    source: int  # the canonical block index it comes from
    output_index: int
    id: str
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


class StreamWriter:
    """One Response's events; `base` is its skeleton (status in_progress, no output)."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.seq = 0
        self.items: list[dict[str, Any]] = []
        self.open: _Open | None = None

    def _sse(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, **data, "sequence_number": self.seq}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        return self._sse("response.created", {"response": self.base}) + \
            self._sse("response.in_progress", {"response": self.base})

    def event(self, ev: StreamEvent) -> bytes:
        """A text or tool event (block_stop and other choices are not Responses events)."""
        if ev.choice:
            return b""
        out = b""
        if ev.kind == "text" and ev.text:
            if self.open is None or self.open.kind != "message" or self.open.source != ev.index:
                out += self._close() + self._open_message(ev.index)
            assert self.open is not None
            self.open.parts.append(ev.text)
            out += self._sse("response.output_text.delta", {**self._where(), "content_index": 0, "delta": ev.text,
                                                            "logprobs": []})
        elif ev.kind == "tool_start":
            out += self._close()
            self.open = _Open("function_call", ev.index, len(self.items), item_id("fc"), ev.id, ev.name)
            item = call_item(self.open.id, ev.id, ev.name, "", "in_progress")
            out += self._sse("response.output_item.added", {"output_index": self.open.output_index, "item": item})
        elif ev.kind == "tool_delta" and self.open is not None and self.open.kind == "function_call":
            self.open.parts.append(ev.text)
            out += self._sse("response.function_call_arguments.delta", {**self._where(), "delta": ev.text})
        return out

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open.id, "output_index": self.open.output_index}

    def _open_message(self, source: int) -> bytes:
        self.open = _Open("message", source, len(self.items), item_id("msg"))
        item = {**message_item(self.open.id, "", "in_progress"), "content": []}
        return self._sse("response.output_item.added", {"output_index": self.open.output_index, "item": item}) + \
            self._sse("response.content_part.added", {**self._where(), "content_index": 0,
                                                      "part": {"type": "output_text", "text": "", "annotations": []}})

    def _close(self, status: str = "completed") -> bytes:
        if self.open is None:
            return b""
        where, text = self._where(), "".join(self.open.parts)
        if self.open.kind == "message":
            item = message_item(self.open.id, text, status)
            out = self._sse("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            out += self._sse("response.content_part.done", {**where, "content_index": 0,
                                                            "part": item["content"][0]})
        else:
            item = call_item(self.open.id, self.open.call_id, self.open.name, text)
            out = self._sse("response.function_call_arguments.done", {**where, "arguments": text})
        self.items.append(item)
        self.open = None
        return out + self._sse("response.output_item.done", {"output_index": where["output_index"], "item": item})

    def close_items(self, resp: ChatResponse) -> bytes:
        """Close the last item (incomplete when the answer was cut)."""
        status, _ = status_of(resp)
        last = "incomplete" if status == "incomplete" and self.open is not None and self.open.kind == "message" \
            else "completed"
        return self._close(last)

    def final(self, resp: ChatResponse, completed_at: float) -> dict[str, Any]:
        """The complete Response object: the streamed items with the answer's status and usage."""
        return finished(self.base, resp, list(self.items), completed_at)

    def finish(self, response: dict[str, Any]) -> bytes:
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._sse(kind, {"response": response})

    def fail(self, exc: APIError) -> bytes:
        """A failure after the first byte: an `error` event, then `response.failed` with what was sent."""
        code = "rate_limit_exceeded" if exc.status == 429 else "server_error"
        out = self._close("incomplete")
        out += self._sse("error", {"code": exc.code or code, "message": exc.message, "param": exc.param})
        failed = {**self.base, "status": "failed", "output": list(self.items),
                  "error": {"code": code, "message": exc.message}}
        return out + self._sse("response.failed", {"response": failed})
