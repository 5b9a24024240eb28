"""OpenAI Chat Completions <-> canonical."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.formats.errors import APIError, invalid
from scrimp.pipeline import StreamEvent

_KNOWN = {"model", "messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "stop", "n", "seed", "response_format", "stream", "stream_options", "user", "metadata",
          "prompt_cache_key"}
_ROLES = {"system", "developer", "user", "assistant", "tool"}
FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                  "content_filter": "refusal"}
STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", None: "stop"}


MAX_N = 128  # OpenAI's limit on choices per request


def _int(body: dict[str, Any], key: str, minimum: int = 1, maximum: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"Invalid type for '{key}': expected an integer, but got {type(value).__name__}.", key)
    if value < minimum:
        raise APIError(400, f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, but got "
                            f"{value} instead.", param=key, code="integer_below_min_value")
    if maximum is not None and value > maximum:
        raise APIError(400, f"Invalid '{key}': integer above maximum value. Expected a value <= {maximum}, but got "
                            f"{value} instead.", param=key, code="integer_above_max_value")
    return value


def _number(body: dict[str, Any], key: str, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise invalid(f"Invalid type for '{key}': expected a number, but got {type(value).__name__}.", key)
    if not 0 <= value <= hi:
        raise invalid(f"Invalid '{key}': must be between 0 and {hi}.", key)
    return float(value)


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            blocks.append({"type": "image", "source": {"type": "url", "url": part["image_url"].get("url", "")}})
        else:
            raise invalid(f"Invalid content part at '{where}[{j}]'.", f"{where}[{j}]")
    return blocks


def check_model(body: dict[str, Any]) -> str:
    """The request's `model`, or OpenAI's own error for a missing or mistyped one."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid(f"Invalid type for 'model': expected a string, but got {_json_type(model)} instead.", "model")
    if not model:
        raise invalid("Missing required parameter: 'model'.", "model")
    return model


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a decimal", list: "an array", dict: "an object"}.get(type(value), "a value")


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """A client's OpenAI request as a canonical request; the client's own error for bad input."""
    model = check_model(body)
    messages = body.get("messages")
    if messages is None:
        raise invalid("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("Invalid 'messages': expected a non-empty array.", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = msg.get("role")
        if role not in _ROLES:
            raise invalid(f"Invalid value for 'messages[{i}].role': {role!r}.", f"messages[{i}].role")
        blocks = _parts(msg.get("content"), f"messages[{i}].content")
        if role in ("system", "developer"):
            system.extend(b for b in blocks if b["type"] == "text")
        elif role == "tool":
            if not isinstance(msg.get("tool_call_id"), str):
                raise invalid(f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                              f"messages[{i}].tool_call_id")
            result = {"type": "tool_result", "tool_use_id": msg["tool_call_id"],
                      "content": "".join(b.get("text", "") for b in blocks)}
            if turns and turns[-1]["role"] == "user" and all(b["type"] == "tool_result" for b in turns[-1]["content"]):
                turns[-1]["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
        elif role == "assistant":
            for call in msg.get("tool_calls") or []:
                fn = call.get("function", {}) if isinstance(call, dict) else {}
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    args = {"_raw": fn.get("arguments")}
                blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                               "input": args})
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": "user", "content": blocks})
    tools = []
    raw_tools = body.get("tools")
    if raw_tools is not None:
        if not isinstance(raw_tools, list):
            raise invalid("Invalid type for 'tools': expected an array.", "tools")
        for i, tool in enumerate(raw_tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise invalid(f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}].function")
            tools.append({"name": fn["name"], "description": fn.get("description", ""),
                          "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}})
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise invalid("Invalid 'stop': expected a string or an array of strings.", "stop")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema")):
        raise invalid("Invalid 'response_format.type'.", "response_format")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("Invalid type for 'stream': expected a boolean.", "stream")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise invalid("Invalid type for 'metadata': expected an object.", "metadata")
    return ChatRequest(
        model=model, messages=turns, system=system, tools=tools,
        tool_choice=_tool_choice_in(body.get("tool_choice")),
        max_tokens=_int(body, "max_completion_tokens") or _int(body, "max_tokens"),
        temperature=_number(body, "temperature", 2.0), top_p=_number(body, "top_p", 1.0),
        stop=[stop] if isinstance(stop, str) else list(stop or []), n=_int(body, "n", maximum=MAX_N) or 1,
        seed=_int(body, "seed", minimum=-(2**63)), response_format=fmt if fmt and fmt.get("type") != "text" else None,
        stream=stream, include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        user=body.get("user") if isinstance(body.get("user"), str) else None, metadata=metadata,
        prompt_cache_key=body.get("prompt_cache_key"),
        extra={k: v for k, v in body.items() if k not in _KNOWN}, inbound="openai",
    )


def _tool_choice_in(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    raise invalid("Invalid value for 'tool_choice'.", "tool_choice")


def _tool_choice_out(choice: dict[str, Any] | None) -> Any:
    if choice is None:
        return None
    kind = choice.get("type")
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return kind


def _text(blocks: Iterable[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in blocks if b.get("type") == "text")


def build_request(req: ChatRequest, model: str, *, stream: bool, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The canonical request as an OpenAI upstream body for `model`."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(b.get("text", "") for b in req.system)})
    for turn in req.messages:
        blocks = turn["content"]
        if turn["role"] == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": _text(blocks) or None}
            calls = [{"id": b["id"], "type": "function",
                      "function": {"name": b["name"], "arguments": orjson.dumps(b.get("input", {})).decode()}}
                     for b in blocks if b.get("type") == "tool_use"]
            if calls:
                msg["tool_calls"] = calls
            messages.append(msg)
            continue
        for b in blocks:
            if b.get("type") == "tool_result":
                content = b.get("content", "")
                if isinstance(content, list):
                    content = _text(content)
                messages.append({"role": "tool", "tool_call_id": b["tool_use_id"], "content": str(content)})
        parts = []
        for b in blocks:
            if b.get("type") == "text":
                parts.append({"type": "text", "text": b["text"]})
            elif b.get("type") == "image":
                src = b.get("source", {})
                url = src.get("url") or f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
        if parts:
            only_text = all(p["type"] == "text" for p in parts)
            messages.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text else parts})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if req.tools:
        body["tools"] = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                           "parameters": t.get("input_schema", {})}}
                         for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice_out(req.tool_choice)
    if req.max_tokens is not None:
        body[max_tokens_field] = req.max_tokens
    for key in ("temperature", "top_p", "seed", "response_format", "user", "prompt_cache_key"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value
    if req.stop:
        body["stop"] = req.stop
    if req.n != 1:
        body["n"] = req.n
    if req.metadata and req.inbound == "openai":
        body["metadata"] = req.metadata
    if req.inbound in ("openai", "responses"):  # a Responses request's extra holds Chat Completions parameters
        body.update(req.extra)
    if stream:
        # Always ask for usage so a streamed call is priced from real figures.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _usage_in(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (raw.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(input=(raw.get("prompt_tokens") or 0) - cached, cache_read=cached,
                 output=raw.get("completion_tokens") or 0, reasoning=reasoning)


def _blocks_of_message(msg: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if msg.get("content"):
        blocks.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function", {})
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args})
    return blocks


def parse_response(body: dict[str, Any]) -> ChatResponse:
    choices = body.get("choices") or [{"message": {}, "finish_reason": "stop"}]
    first = choices[0]
    return ChatResponse(
        id=body.get("id", ""), model=body.get("model", ""), content=_blocks_of_message(first.get("message") or {}),
        stop_reason=FINISH_TO_STOP.get(first.get("finish_reason") or "stop", "end_turn"),
        usage=_usage_in(body.get("usage")),
        extra_choices=[(_blocks_of_message(c.get("message") or {}), FINISH_TO_STOP.get(c.get("finish_reason") or "stop"))
                       for c in choices[1:]],
    )


def _message_of(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": _text(blocks) or None, "refusal": None}
    calls = [{"id": b["id"], "type": "function",
              "function": {"name": b["name"], "arguments": orjson.dumps(b.get("input", {})).decode()}}
             for b in blocks if b.get("type") == "tool_use"]
    if calls:
        msg["tool_calls"] = calls
    if msg["content"] is None and not calls:
        msg["content"] = ""
    return msg


def usage_out(u: Usage) -> dict[str, Any]:
    prompt = u.total_input  # OpenAI's prompt_tokens include cached ones (and, from Anthropic, writes)
    return {"prompt_tokens": prompt, "completion_tokens": u.output, "total_tokens": prompt + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cache_read},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning}}


def render_response(resp: ChatResponse) -> dict[str, Any]:
    choices = [(resp.content, resp.stop_reason)] + list(resp.extra_choices)
    return {
        "id": resp.id if resp.id.startswith("chatcmpl") else "chatcmpl-" + resp.id, "object": "chat.completion",
        "created": int(time.time()), "model": resp.model,
        "choices": [{"index": i, "message": _message_of(blocks), "logprobs": None,
                     "finish_reason": STOP_TO_FINISH.get(stop, "stop")} for i, (blocks, stop) in enumerate(choices)],
        "usage": usage_out(resp.usage),
    }


async def parse_stream(lines: AsyncIterator[str], state: dict[str, Any]) -> AsyncIterator[StreamEvent]:
    """OpenAI SSE lines -> canonical events, each tagged with its choice (n > 1). `state` collects what has
    arrived, so a caller can price a stream that ended early. The last event is "done" with the assembled
    response (every choice)."""
    choices: dict[int, dict[str, Any]] = {}
    state.update(choices=choices, id="", model="", usage=None)
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = orjson.loads(data)
        state["id"] = chunk.get("id", state["id"])
        state["model"] = chunk.get("model", state["model"])
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            c = choice.get("index", 0)
            slot = choices.get(c)
            if slot is None:
                slot = choices[c] = {"text": [], "tools": {}, "finish": None}
            delta = choice.get("delta") or {}
            if delta.get("content"):
                slot["text"].append(delta["content"])
                yield StreamEvent("text", index=0, text=delta["content"], choice=c)
            tools = slot["tools"]
            for call in delta.get("tool_calls") or []:
                idx = call.get("index", 0)
                fn = call.get("function") or {}
                if idx not in tools:
                    tools[idx] = {"id": call.get("id", ""), "name": fn.get("name", ""), "args": []}
                    yield StreamEvent("tool_start", index=1 + idx, id=tools[idx]["id"], name=tools[idx]["name"],
                                      choice=c)
                if fn.get("arguments"):
                    tools[idx]["args"].append(fn["arguments"])
                    yield StreamEvent("tool_delta", index=1 + idx, text=fn["arguments"], choice=c)
            if choice.get("finish_reason"):
                slot["finish"] = choice["finish_reason"]
    yield StreamEvent("done", response=assemble(state))


def _slot_blocks(slot: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if slot.get("text"):
        blocks.append({"type": "text", "text": "".join(slot["text"])})
    for _, tool in sorted((slot.get("tools") or {}).items()):
        raw = "".join(tool["args"])
        try:
            args = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": raw}
        blocks.append({"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": args})
    return blocks


def assemble(state: dict[str, Any]) -> ChatResponse:
    """The response a stream's `state` holds: choice 0 as the content, the others as extra choices."""
    choices = state.get("choices") or {}
    slots = [choices.get(k, {}) for k in range(max(choices) + 1)] if choices else [{}]
    stops = [FINISH_TO_STOP.get(slot.get("finish") or "stop", "end_turn") for slot in slots]
    return ChatResponse(id=state.get("id", ""), model=state.get("model", ""), content=_slot_blocks(slots[0]),
                        stop_reason=stops[0], usage=_usage_in(state.get("usage")),  # type: ignore[arg-type]
                        extra_choices=[(_slot_blocks(slot), stop)  # type: ignore[misc]
                                       for slot, stop in zip(slots[1:], stops[1:], strict=True)])


class StreamWriter:
    """Canonical events -> OpenAI SSE bytes for a client; each choice (n > 1) under its own index."""

    def __init__(self, model: str, include_usage: bool, response_id: str) -> None:
        self.include_usage = include_usage
        self.base = {"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model}
        self.started: set[int] = set()
        self.tool_index: dict[tuple[int, int], int] = {}  # (choice, block index) -> tool call index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, choice: int = 0) -> bytes:
        body = dict(self.base,
                    choices=[{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if self.include_usage:
            body["usage"] = None
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def _start(self, choice: int) -> bytes:
        if choice in self.started:
            return b""
        self.started.add(choice)
        return self._chunk({"role": "assistant", "content": ""}, choice=choice)

    def _tool(self, choice: int, index: int) -> int:
        key = (choice, index)
        if key not in self.tool_index:
            self.tool_index[key] = sum(1 for c, _ in self.tool_index if c == choice)
        return self.tool_index[key]

    def event(self, ev: StreamEvent) -> bytes:
        c = ev.choice
        if ev.kind == "done":
            if ev.response is None:
                return b""
            out = b""
            stops = [ev.response.stop_reason] + [stop for _, stop in ev.response.extra_choices]
            for choice, stop in enumerate(stops):
                out += self._start(choice) + self._chunk({}, STOP_TO_FINISH.get(stop, "stop"), choice)
            if self.include_usage:
                usage = dict(self.base, choices=[], usage=usage_out(ev.response.usage))
                out += b"data: " + orjson.dumps(usage) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        out = self._start(c)
        if ev.kind == "text" and ev.text:
            out += self._chunk({"content": ev.text}, choice=c)
        elif ev.kind == "tool_start":
            out += self._chunk({"tool_calls": [{"index": self._tool(c, ev.index), "id": ev.id, "type": "function",
                                                "function": {"name": ev.name, "arguments": ""}}]}, choice=c)
        elif ev.kind == "tool_delta":
            out += self._chunk({"tool_calls": [{"index": self._tool(c, ev.index),
                                                "function": {"arguments": ev.text}}]}, choice=c)
        return out
