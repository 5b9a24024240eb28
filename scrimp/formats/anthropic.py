"""Anthropic Messages <-> canonical."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.formats.errors import APIError, invalid
from scrimp.pipeline import StreamEvent

_KNOWN = {"model", "messages", "system", "tools", "tool_choice", "max_tokens", "temperature", "top_p",
          "stop_sequences", "stream", "metadata"}
# Chat Completions parameters the Messages API does not have: refused as Anthropic refuses them ("Extra inputs
# are not permitted") rather than silently dropped. Other unknown fields pass through to an Anthropic upstream.
OPENAI_ONLY = ("n", "response_format", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "seed",
               "logit_bias", "max_completion_tokens", "stream_options", "stop", "user", "parallel_tool_calls",
               "functions", "function_call", "prompt_cache_key", "reasoning_effort", "modalities", "audio",
               "prediction", "store", "web_search_options", "verbosity", "safety_identifier")
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; used when an OpenAI client gave none
JSON_TOOL = "json_response"  # structured output served by Anthropic: a forced tool whose input is the JSON


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}: Input should be a valid string or list of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"{where}.{j}: each content block must be an object with a 'type'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise invalid(f"{where}.{j}.text: Field required")
    return [dict(b) for b in content]


def parse_request(body: dict[str, Any]) -> ChatRequest:
    for key in body:
        if key in OPENAI_ONLY:
            raise invalid(f"{key}: Extra inputs are not permitted")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid("model: Input should be a valid string")
    if not model:
        raise invalid("model: Field required")
    if "max_tokens" not in body:
        raise invalid("max_tokens: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages: Field required" if messages is None else "messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    turns = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        turns.append({"role": msg["role"], "content": _blocks(msg.get("content"), f"messages.{i}.content")})
    system = body.get("system")
    temp = body.get("temperature")
    if temp is not None and (not isinstance(temp, (int, float)) or isinstance(temp, bool) or not 0 <= temp <= 1):
        raise invalid("temperature: Input should be a number between 0 and 1")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise invalid("metadata: Input should be a valid dictionary")
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")):
        raise invalid("tool_choice: Input should be an object with type 'auto', 'any', 'tool' or 'none'")
    return ChatRequest(
        model=model, messages=turns, system=_blocks(system, "system") if system is not None else [],
        tools=[dict(t) for t in tools], tool_choice=choice, max_tokens=max_tokens,
        temperature=float(temp) if temp is not None else None, top_p=body.get("top_p"),
        stop=list(stops or []), stream=stream, include_usage=True,
        user=metadata.get("user_id") if isinstance(metadata.get("user_id"), str) else None, metadata=metadata,
        extra={k: v for k, v in body.items() if k not in _KNOWN}, inbound="anthropic",
    )


def build_request(req: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The canonical request as an Anthropic upstream body for `model`."""
    if req.n != 1:
        raise invalid(f"n={req.n} is not supported by {model}: Anthropic models return one choice.", "n")
    body: dict[str, Any] = {"model": model, "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
                            "messages": [{"role": t["role"], "content": t["content"]} for t in req.messages]}
    if req.system:
        body["system"] = req.system
    tools = list(req.tools)
    choice = req.tool_choice
    fmt = req.response_format or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        tools.append({"name": JSON_TOOL, "description": "Reply with the JSON answer.", "input_schema": schema})
        choice = {"type": "tool", "name": JSON_TOOL}
    elif fmt.get("type") == "json_object":
        body["system"] = list(req.system) + [{"type": "text", "text": "Reply with a single JSON object only."}]
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if req.temperature is not None:
        body["temperature"] = min(req.temperature, 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = req.stop
    user_id = req.metadata.get("user_id") if req.inbound == "anthropic" else req.user
    if user_id:
        body["metadata"] = {"user_id": user_id}
    if req.inbound == "anthropic":
        body.update(req.extra)
    if stream:
        body["stream"] = True
    return body


def usage_in(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    written = raw.get("cache_creation_input_tokens") or 0
    split = raw.get("cache_creation") or {}
    one_hour = split.get("ephemeral_1h_input_tokens") or 0
    return Usage(input=raw.get("input_tokens") or 0, output=raw.get("output_tokens") or 0,
                 cache_read=raw.get("cache_read_input_tokens") or 0,
                 cache_write_1h=one_hour, cache_write_5m=written - one_hour)


def _unwrap_json_tool(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A structured-output reply comes back as our forced tool; the client asked for JSON text."""
    out = []
    for b in blocks:
        if b.get("type") == "tool_use" and b.get("name") == JSON_TOOL:
            out.append({"type": "text", "text": orjson.dumps(b.get("input", {})).decode()})
        elif b.get("type") in ("text", "tool_use"):
            out.append(b)
    return out


def parse_response(body: dict[str, Any]) -> ChatResponse:
    content = _unwrap_json_tool(body.get("content") or [])
    stop = body.get("stop_reason")
    if stop == "tool_use" and not any(b["type"] == "tool_use" for b in content):
        stop = "end_turn"
    return ChatResponse(id=body.get("id", ""), model=body.get("model", ""), content=content,
                        stop_reason=stop, stop_sequence=body.get("stop_sequence"), usage=usage_in(body.get("usage")))


def usage_out(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m,
                               "ephemeral_1h_input_tokens": u.cache_write_1h},
            "output_tokens": u.output}


def render_response(resp: ChatResponse) -> dict[str, Any]:
    content = [b for b in resp.content if b.get("type") in ("text", "tool_use")] or [{"type": "text", "text": ""}]
    return {"id": resp.id if resp.id.startswith("msg_") else "msg_" + resp.id, "type": "message",
            "role": "assistant", "model": resp.model, "content": content, "stop_reason": resp.stop_reason,
            "stop_sequence": resp.stop_sequence, "usage": usage_out(resp.usage)}


async def parse_stream(lines: AsyncIterator[str], state: dict[str, Any]) -> AsyncIterator[StreamEvent]:
    """Anthropic SSE lines -> canonical events; `state` keeps what arrived (for early hang-ups)."""
    blocks: dict[int, dict[str, Any]] = {}
    state.update(blocks=blocks, id="", model="", stop=None, stop_sequence=None, usage={})
    async for line in lines:
        if not line.startswith("data:"):
            continue
        ev = orjson.loads(line[5:].strip())
        kind = ev.get("type")
        if kind == "message_start":
            msg = ev.get("message") or {}
            state.update(id=msg.get("id", ""), model=msg.get("model", ""))
            state["usage"].update(msg.get("usage") or {})
        elif kind == "content_block_start":
            block = dict(ev.get("content_block") or {})
            idx = ev.get("index", 0)
            block["_parts"] = []
            blocks[idx] = block
            if block.get("type") == "tool_use" and block.get("name") != JSON_TOOL:
                yield StreamEvent("tool_start", index=idx, id=block.get("id", ""), name=block.get("name", ""))
        elif kind == "content_block_delta":
            idx = ev.get("index", 0)
            delta = ev.get("delta") or {}
            block = blocks.setdefault(idx, {"type": "text", "_parts": []})
            if delta.get("type") == "text_delta":
                block["_parts"].append(delta.get("text", ""))
                yield StreamEvent("text", index=idx, text=delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                block["_parts"].append(delta.get("partial_json", ""))
                if block.get("name") == JSON_TOOL:  # structured output: the JSON is the client's text
                    yield StreamEvent("text", index=idx, text=delta.get("partial_json", ""))
                else:
                    yield StreamEvent("tool_delta", index=idx, text=delta.get("partial_json", ""))
        elif kind == "content_block_stop":
            yield StreamEvent("block_stop", index=ev.get("index", 0))
        elif kind == "message_delta":
            delta = ev.get("delta") or {}
            state.update(stop=delta.get("stop_reason"), stop_sequence=delta.get("stop_sequence"))
            state["usage"].update({k: v for k, v in (ev.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            break
        elif kind == "error":
            err = ev.get("error") or {}
            raise APIError(529 if err.get("type") == "overloaded_error" else 500, err.get("message", "upstream error"))
    yield StreamEvent("done", response=assemble(state))


def assemble(state: dict[str, Any]) -> ChatResponse:
    content = []
    for _, block in sorted((state.get("blocks") or {}).items()):
        raw = "".join(block.get("_parts", []))
        if block.get("type") == "text":
            content.append({"type": "text", "text": raw})
        elif block.get("type") == "tool_use":
            try:
                args = orjson.loads(raw or "{}")
            except orjson.JSONDecodeError:
                args = {"_raw": raw}
            content.append({"type": "tool_use", "id": block.get("id", ""), "name": block.get("name", ""),
                            "input": args})
    return parse_response({"id": state.get("id", ""), "model": state.get("model", ""), "content": content,
                           "stop_reason": state.get("stop"), "stop_sequence": state.get("stop_sequence"),
                           "usage": state.get("usage")})


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamWriter:
    """Canonical events -> Anthropic SSE bytes for a client (message_start, blocks, ping, message_delta, stop)."""

    def __init__(self, model: str, response_id: str | None = None) -> None:
        self.model = model
        self.id = response_id or "msg_" + uuid.uuid4().hex[:24]
        self.started = False
        self.open: int | None = None
        self.index_map: dict[int, int] = {}

    def _start(self) -> bytes:
        self.started = True
        msg = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": usage_out(Usage(output=1))}
        return _sse("message_start", {"type": "message_start", "message": msg}) + _sse("ping", {"type": "ping"})

    def _open(self, src: int, block: dict[str, Any]) -> bytes:
        out = self._close()
        idx = self.index_map.setdefault(src, len(self.index_map))
        self.open = idx
        return out + _sse("content_block_start", {"type": "content_block_start", "index": idx, "content_block": block})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        idx, self.open = self.open, None
        return _sse("content_block_stop", {"type": "content_block_stop", "index": idx})

    def event(self, ev: StreamEvent) -> bytes:
        if ev.choice:  # one choice only in this API (n > 1 is an OpenAI parameter)
            return b""
        out = b"" if self.started else self._start()
        if ev.kind == "text":
            if self.open is None or self.index_map.get(ev.index) != self.open:
                out += self._open(ev.index, {"type": "text", "text": ""})
            out += _sse("content_block_delta", {"type": "content_block_delta", "index": self.open,
                                                "delta": {"type": "text_delta", "text": ev.text}})
        elif ev.kind == "tool_start":
            out += self._open(ev.index, {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}})
        elif ev.kind == "tool_delta":
            out += _sse("content_block_delta", {"type": "content_block_delta", "index": self.open,
                                                "delta": {"type": "input_json_delta", "partial_json": ev.text}})
        elif ev.kind == "block_stop":
            out += self._close()
        elif ev.kind == "done" and ev.response is not None:
            out += self._close()
            usage = usage_out(ev.response.usage)
            usage.pop("cache_creation")
            out += _sse("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": ev.response.stop_reason or "end_turn", "stop_sequence": ev.response.stop_sequence},
                "usage": usage})
            out += _sse("message_stop", {"type": "message_stop"})
        return out
