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

An answer from an OpenAI model's own Responses API is streamed as the upstream streamed it: its events (`raw`)
are passed on as they are (hosted tool calls, annotations and all) with this stream's sequence numbers, around
this stream's own `response.created` / `response.completed`. A replayed answer that has the upstream's output
items (a cache hit) has them streamed again, item by item.
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
        self.native = False  # the output is the upstream's own items (passed on or replayed), not built here

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
        if ev.raw is not None:
            self.native = True
            return self._passed(ev.raw)
        if ev.kind == "native" and ev.response is not None:
            self.native = True
            return self._replayed(ev.response.output_items or [])
        if self.native:  # the canonical events of an answer already streamed as its own items
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

    def _passed(self, raw: dict[str, Any]) -> bytes:
        """An upstream Responses event, passed on with this stream's sequence number."""
        kind = raw.get("type", "")
        data = {k: v for k, v in raw.items() if k not in ("type", "sequence_number")}
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self.items.append(data["item"])
        return self._sse(kind, data)

    def _replayed(self, items: list[dict[str, Any]]) -> bytes:
        """A complete answer's output items as the events that stream them."""
        out = b""
        for item in items:
            index = len(self.items)
            where = {"item_id": item.get("id"), "output_index": index}
            kind = item.get("type")
            if kind == "message":
                out += self._sse("response.output_item.added", {"output_index": index, "item": {
                    **item, "status": "in_progress", "content": []}})
                for n, part in enumerate(item.get("content") or []):
                    out += self._replayed_part(where, n, part)
            elif kind == "function_call":
                args = item.get("arguments", "")
                out += self._sse("response.output_item.added", {"output_index": index, "item": {
                    **item, "arguments": "", "status": "in_progress"}})
                out += self._sse("response.function_call_arguments.delta", {**where, "delta": args})
                out += self._sse("response.function_call_arguments.done", {**where, "arguments": args})
            else:
                started = {**item, "status": "in_progress"} if "status" in item else item
                out += self._sse("response.output_item.added", {"output_index": index, "item": started})
                if kind in ("web_search_call", "file_search_call"):
                    for step in ("in_progress", "searching", "completed"):
                        out += self._sse(f"response.{kind}.{step}", where)
            out += self._sse("response.output_item.done", {"output_index": index, "item": item})
            self.items.append(item)
        return out

    def _replayed_part(self, where: dict[str, Any], n: int, part: dict[str, Any]) -> bytes:
        at = {**where, "content_index": n}
        kind = part.get("type")
        if kind == "output_text":
            text = part.get("text", "")
            out = self._sse("response.content_part.added", {**at, "part": {**part, "text": "", "annotations": []}})
            out += self._sse("response.output_text.delta", {**at, "delta": text, "logprobs": []})
            for a, annotation in enumerate(part.get("annotations") or []):
                out += self._sse("response.output_text.annotation.added", {**at, "annotation_index": a,
                                                                           "annotation": annotation})
            out += self._sse("response.output_text.done", {**at, "text": text, "logprobs": []})
        elif kind == "refusal":
            refusal = part.get("refusal", "")
            out = self._sse("response.content_part.added", {**at, "part": {**part, "refusal": ""}})
            out += self._sse("response.refusal.delta", {**at, "delta": refusal})
            out += self._sse("response.refusal.done", {**at, "refusal": refusal})
        else:
            out = self._sse("response.content_part.added", {**at, "part": part})
        return out + self._sse("response.content_part.done", {**at, "part": part})

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
        """The complete Response object: the streamed items (the upstream's own final ones, when it streamed
        them) with the answer's status and usage."""
        if self.native and resp.output_items is not None:
            return finished(self.base, resp, list(resp.output_items), completed_at)
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
