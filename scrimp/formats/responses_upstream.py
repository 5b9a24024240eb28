"""A Responses request sent natively to an OpenAI model (`POST {base_url}/responses`), and its answer read back.

The request is the client's own body (`Native`) with the levers' edits applied: the model's upstream name,
`max_output_tokens`, `temperature` / `top_p` (a model may refuse them), `prompt_cache_key` (the prompt-cache
planner's), `stream`. scrimp keeps the conversation, so `previous_response_id` is resolved here: the earlier
turns' items are sent in `input` and `store` is false (the upstream never saw scrimp's ids). Reasoning items
without `encrypted_content` are left out of that input, as OpenAI could not find them again (and the items of the
answer they opened go without their ids). A stage that changed the conversation (system, turns or function
tools) has it rebuilt from the canonical request.

The answer, whole or streamed, becomes the canonical ChatResponse / StreamEvents (text, function calls, usage
with cached and reasoning tokens, stop reason) for every stage, and keeps the upstream's own output items
(`ChatResponse.output_items`) and events (`StreamEvent.raw`) for the Responses wire to render as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, StopReason, Usage
from scrimp.formats.errors import APIError
from scrimp.formats.responses import Native, _arguments
from scrimp.pipeline import StreamEvent

PATH = "/responses"
_NOT_SENT = ("model", "input", "previous_response_id", "store", "stream", "stream_options")
# Events of the response itself: the Responses wire sends its own (its id, its echo of the request).
_LIFECYCLE = ("response.created", "response.in_progress", "response.queued")


def applies(req: ChatRequest) -> bool:
    """A request an OpenAI model can be sent through its own Responses API (the client spoke it)."""
    return isinstance(req.native, Native)


def refusal(req: ChatRequest) -> APIError | None:
    """Why an Anthropic model cannot serve this request (hosted tools, their items), or None."""
    native = req.native
    return native.only_openai[0] if isinstance(native, Native) and native.only_openai else None


# -- the request -------------------------------------------------------------------------------------------------

def build_request(req: ChatRequest, model: str) -> dict[str, Any]:
    """The upstream body for `model`: the client's body, its conversation in full, the levers' edits applied."""
    native: Native = req.native
    body = {k: v for k, v in native.body.items() if k not in _NOT_SENT}
    if _same(req.system, native.system) and _same(req.messages, native.messages):
        items = stored_items(native.history) + client_items(native.body.get("input"))
    else:  # a stage changed the conversation: the canonical one is what goes
        instructions, items = items_of(req)
        body.pop("instructions", None)
        if instructions:
            body["instructions"] = instructions
    if not _same(req.tools, native.tools):
        hosted = [t for t in body.get("tools") or [] if t.get("type") != "function"]
        body["tools"] = [{"type": "function", "name": t["name"], "description": t.get("description") or None,
                          "parameters": t.get("input_schema")} for t in req.tools] + hosted
    body.update(model=model, input=items, store=False)
    for key, value in (("max_output_tokens", req.max_tokens), ("temperature", req.temperature),
                       ("top_p", req.top_p), ("prompt_cache_key", req.prompt_cache_key)):
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    if req.stream:
        body["stream"] = True
        if native.body.get("stream_options") is not None:
            body["stream_options"] = native.body["stream_options"]
    return body


def client_items(raw: Any) -> list[dict[str, Any]]:
    """The client's own `input` as items, as it sent them (but for reasoning items OpenAI could not find)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return _without_lost_reasoning(raw)


def stored_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier turns from scrimp's store, as input for an upstream that never saw them: input messages and tool
    outputs without the ids scrimp gave them; output items (assistant messages, calls) as OpenAI returns them."""
    out = []
    for item in items:
        kind = item.get("type")
        if kind == "message" and item.get("role") != "assistant":
            out.append({"type": "message", "role": item["role"], "content": item["content"]})
        elif kind == "function_call_output":
            out.append({"type": "function_call_output", "call_id": item["call_id"], "output": item["output"]})
        else:
            out.append(item)
    return _without_lost_reasoning(out)


def _without_lost_reasoning(items: list[Any]) -> list[Any]:
    """Items without the reasoning items an upstream called with `store: false` could not find again (no
    `encrypted_content`). The output items that followed one in its answer lose their ids too (OpenAI pairs them
    with it by id): a function call is sent without its id, an assistant message as its text."""
    out = []
    unpaired = False
    for item in items:
        if not isinstance(item, dict):
            out.append(item)
            continue
        kind, role = item.get("type"), item.get("role")
        if kind == "reasoning":
            unpaired = not item.get("encrypted_content")
            if unpaired:
                continue
        elif (role is not None and role != "assistant") or str(kind).endswith("_output"):
            unpaired = False  # the next turn: not part of that answer
        elif unpaired and kind == "function_call":
            item = {k: v for k, v in item.items() if k not in ("id", "status")}
        elif unpaired and role == "assistant" and item.get("id"):
            parts = item.get("content") or []
            item = {"role": "assistant", "content": "".join(
                p.get("text") or p.get("refusal") or "" for p in parts if isinstance(p, dict))}
        out.append(item)
    return out


def items_of(req: ChatRequest) -> tuple[str | None, list[dict[str, Any]]]:
    """The canonical conversation as Responses input: (instructions, items)."""
    instructions = "\n\n".join(b.get("text", "") for b in req.system if b.get("type") == "text") or None
    items: list[dict[str, Any]] = []
    for turn in req.messages:
        parts: list[dict[str, Any]] = []  # a user turn's text and images, up to its next tool output
        for block in turn["content"]:
            kind = block.get("type")
            if turn["role"] == "user" and kind in ("text", "image"):
                if kind == "text":
                    parts.append({"type": "input_text", "text": block.get("text", "")})
                else:
                    src = block.get("source", {})
                    url = src.get("url") or f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
                    parts.append({"type": "input_image", "image_url": url, "detail": "auto"})
                continue
            if parts:
                items.append({"role": "user", "content": parts})
                parts = []
            if kind == "tool_use":
                items.append({"type": "function_call", "call_id": block.get("id", ""), "name": block.get("name", ""),
                              "arguments": orjson.dumps(block.get("input", {})).decode()})
            elif kind == "tool_result":
                content = block.get("content", "")
                if isinstance(content, list):
                    content = "".join(b.get("text", "") for b in content if b.get("type") == "text")
                items.append({"type": "function_call_output", "call_id": block.get("tool_use_id", ""),
                              "output": str(content)})
            elif kind == "text":
                items.append({"role": "assistant", "content": block.get("text", "")})
        if parts:
            items.append({"role": "user", "content": parts})
    return instructions, items


def _same(ours: list[dict[str, Any]], parsed: list[dict[str, Any]]) -> bool:
    """The conversation as parsed (prompt-cache markers, which change no answer, set aside)."""
    return ours is parsed or ours == parsed or _unmarked(ours) == _unmarked(parsed)


def _unmarked(blocks: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for b in blocks:
        b = {k: v for k, v in b.items() if k != "cache_control"}
        if isinstance(b.get("content"), list):
            b["content"] = _unmarked(b["content"])
        out.append(b)
    return out


# -- the answer --------------------------------------------------------------------------------------------------

def parse_response(data: dict[str, Any]) -> ChatResponse:
    """A Response object as the canonical response, with its output items as they are."""
    if data.get("status") == "failed":
        raise _failure(data.get("error") or {})
    output = list(data.get("output") or [])
    content: list[dict[str, Any]] = []
    called = False
    for item in output:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    content.append({"type": "text", "text": part.get("text", "")})
                elif part.get("type") == "refusal":
                    content.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "function_call":
            called = True
            content.append({"type": "tool_use", "id": item.get("call_id", ""), "name": item.get("name", ""),
                            "input": _arguments(item.get("arguments") or "")})
    return ChatResponse(id=data.get("id", ""), model=data.get("model", ""), content=content,
                        stop_reason=_stop(data, called), usage=usage_in(data.get("usage")), output_items=output)


def _stop(data: dict[str, Any], called: bool) -> StopReason:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return "refusal" if reason == "content_filter" else "max_tokens"
    return "tool_use" if called else "end_turn"


def usage_in(raw: dict[str, Any] | None) -> Usage:
    """Responses usage (input_tokens include the cached ones, output_tokens the reasoning ones) as canonical."""
    raw = raw or {}
    cached = (raw.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (raw.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(input=(raw.get("input_tokens") or 0) - cached, cache_read=cached, output=raw.get("output_tokens") or 0,
                 reasoning=reasoning)


def _failure(error: dict[str, Any]) -> APIError:
    """An upstream's failed response or `error` event as an error of the call (retried when it may pass)."""
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = str(error.get("message") or "the upstream response failed")
    if code == "rate_limit_exceeded":
        status = 429
    elif code and (code.startswith("invalid") or code in ("context_length_exceeded", "unsupported_value")):
        status = 400
    else:
        status = 500
    return APIError(status, message, param=error.get("param") if isinstance(error.get("param"), str) else None,
                    code=code)


async def parse_stream(lines: AsyncIterator[str], state: dict[str, Any]) -> AsyncIterator[StreamEvent]:
    """Responses SSE lines -> canonical events, each with the upstream event it came from (`raw`); the last is
    "done" with the complete response. `state` collects what arrived, so a stream that ended early is priced."""
    texts: dict[int, list[str]] = {}
    tools: dict[int, dict[str, Any]] = {}
    state.update(texts=texts, tools=tools, id="", model="")
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = orjson.loads(line[5:].strip())
        kind = data.get("type", "")
        index = data.get("output_index", 0)
        if kind in _LIFECYCLE:
            response = data.get("response") or {}
            state.update(id=response.get("id", state["id"]), model=response.get("model", state["model"]))
        elif kind in ("response.completed", "response.incomplete"):
            yield StreamEvent("done", response=parse_response(data.get("response") or {}))
            return
        elif kind == "response.failed":
            raise _failure((data.get("response") or {}).get("error") or {})
        elif kind == "error":
            raise _failure(data)
        elif kind == "response.output_text.delta":
            texts.setdefault(index, []).append(data.get("delta", ""))
            yield StreamEvent("text", index=index, text=data.get("delta", ""), raw=data)
        elif kind == "response.output_item.added" and (data.get("item") or {}).get("type") == "function_call":
            item = data["item"]
            tools[index] = {"id": item.get("call_id", ""), "name": item.get("name", ""), "args": []}
            yield StreamEvent("tool_start", index=index, id=tools[index]["id"], name=tools[index]["name"], raw=data)
        elif kind == "response.function_call_arguments.delta" and index in tools:
            tools[index]["args"].append(data.get("delta", ""))
            yield StreamEvent("tool_delta", index=index, text=data.get("delta", ""), raw=data)
        elif kind == "response.output_item.done":
            yield StreamEvent("block_stop", index=index, raw=data)
        else:
            yield StreamEvent("native", index=index, raw=data)
    raise APIError(502, "the upstream's Responses stream ended before the response was complete")


def assemble(state: dict[str, Any]) -> ChatResponse:
    """What a stream's `state` holds (a stream that ended early: no usage, no output items)."""
    blocks: list[tuple[int, dict[str, Any]]] = [
        (i, {"type": "text", "text": "".join(parts)}) for i, parts in (state.get("texts") or {}).items()]
    for i, tool in (state.get("tools") or {}).items():
        blocks.append((i, {"type": "tool_use", "id": tool["id"], "name": tool["name"],
                           "input": _arguments("".join(tool["args"]))}))
    return ChatResponse(id=state.get("id", ""), model=state.get("model", ""),
                        content=[b for _, b in sorted(blocks, key=lambda x: x[0])])
