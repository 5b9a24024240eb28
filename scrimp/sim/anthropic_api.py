"""Anthropic wire API: messages (streaming too), count_tokens, with prompt-cache accounting."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scrimp.sim import engine
from scrimp.sim.anthropic_prompt_cache import AnthropicPromptCache, Block, CacheUsage
from scrimp.sim.app import SimState, check_key, read_json, state_of
from scrimp.sim.errors import SimError, invalid
from scrimp.tokens import MESSAGE_OVERHEAD, block_text, count_tokens, tool_text

STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool_calls": "tool_use"}


def prompt_cache(state: SimState) -> AnthropicPromptCache:
    cache = state.extras.get("anthropic_cache")
    if cache is None:
        cache = state.extras["anthropic_cache"] = AnthropicPromptCache(state.clock)
    return cache


def _blocks_of(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}: Input should be a valid string or list of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"{where}.{j}: each content block must be an object with a 'type'")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise invalid(f"{where}.{j}.text: Field required")
    return content


def validate(body: dict[str, Any]) -> None:
    if "max_tokens" not in body:
        raise invalid("max_tokens: Field required")
    mt = body["max_tokens"]
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages: Field required" if messages is None else "messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        _blocks_of(msg.get("content"), f"messages.{i}.content")
    system = body.get("system")
    if system is not None:
        _blocks_of(system, "system")
    temp = body.get("temperature")
    if temp is not None and (not isinstance(temp, (int, float)) or isinstance(temp, bool) or not 0 <= temp <= 1):
        raise invalid("temperature: Input should be a number between 0 and 1")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise invalid(f"tools.{i}.name: Field required")
            if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
                raise invalid(f"tools.{i}.input_schema: Field required")


def cache_blocks(body: dict[str, Any]) -> list[Block]:
    """The prompt as ordered cacheable blocks: tools, system, then each message's content blocks."""
    out: list[Block] = []

    def ttl_of(item: dict[str, Any]) -> str | None:
        cc = item.get("cache_control")
        if not isinstance(cc, dict):
            return None
        return cc.get("ttl", "5m")

    for tool in body.get("tools") or []:
        clean = {k: v for k, v in tool.items() if k != "cache_control"}
        out.append(Block(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS), count_tokens(tool_text(tool)),
                         ttl_of(tool)))
    for block in _blocks_of(body.get("system") or [], "system"):
        out.append(Block(b"system" + block_text(block).encode(), count_tokens(block_text(block)), ttl_of(block)))
    for msg in body["messages"]:
        blocks = _blocks_of(msg["content"], "content")
        for j, block in enumerate(blocks):
            clean = {k: v for k, v in block.items() if k != "cache_control"}
            key = msg["role"].encode() + orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)
            overhead = MESSAGE_OVERHEAD if j == 0 else 0
            out.append(Block(key, count_tokens(block_text(block)) + overhead, ttl_of(block)))
    return out


def prefill_of(body: dict[str, Any]) -> str:
    """The text of a final assistant message (the start of the reply, which the model goes on from)."""
    last = body["messages"][-1]
    if last["role"] != "assistant":
        return ""
    blocks = _blocks_of(last["content"], "content")
    if any(b["type"] != "text" for b in blocks):
        return ""
    return "".join(b["text"] for b in blocks)


def final_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg["role"] == "user":
            return "\n".join(b.get("text", "") for b in _blocks_of(msg["content"], "content") if b["type"] == "text")
    return ""


_JSON_ASK = re.compile(r"\bJSON\b")


def asks_for_json(body: dict[str, Any]) -> bool:
    """Claude has no JSON mode: it answers in JSON when its prompt asks for it (the word JSON in the system
    prompt or the final user turn)."""
    system = "\n".join(block_text(b) for b in _blocks_of(body.get("system") or [], "system"))
    return bool(_JSON_ASK.search(system) or _JSON_ASK.search(final_user_text(body)))


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if "input_schema" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if not tools or choice["type"] in ("auto", "none"):
        return None
    if choice["type"] == "tool":
        match = [t for t in tools if t["name"] == choice.get("name")]
        if not match:
            raise invalid(f"tool_choice.name: no tool named {choice.get('name')!r}")
        tool = match[0]
    else:
        tool = tools[0]
    return {"name": tool["name"], "parameters": tool["input_schema"]}


def usage_of(input_tokens: int, cache: CacheUsage, output: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache.write_5m + cache.write_1h,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache.write_5m, "ephemeral_1h_input_tokens": cache.write_1h},
        "output_tokens": output,
        "service_tier": "standard",
    }


def run_message(state: SimState, body: dict[str, Any]) -> tuple[dict[str, Any], engine.Generation]:
    """Validate, account and generate one message; shared with the Message Batches API."""
    model = state.model(body.get("model"))
    if model.provider != "anthropic":
        raise SimError(404, f"model: {body.get('model')}")
    validate(body)
    for key in model.rejects:
        both = key.split("+")
        if all(body.get(k) is not None for k in both):
            raise invalid(f"{' and '.join(f'`{k}`' for k in both)} cannot "
                          f"{'both be specified' if len(both) > 1 else 'be specified'} for this model.")
    blocks = cache_blocks(body)
    total = sum(b.tokens for b in blocks)
    if total + body["max_tokens"] > model.context_window:
        raise invalid(f"prompt is too long: {total} tokens + max_tokens {body['max_tokens']} > "
                      f"{model.context_window} maximum")
    state.limiter.check(model, total + body["max_tokens"])
    cache = prompt_cache(state).account(model.name, blocks, model.min_cache_tokens)
    uncached = total - cache.read - cache.write_5m - cache.write_1h
    # The seed sees what the model sees: a system string and the same text as blocks, or a block with and
    # without cache_control, give the same reply.
    # A final assistant message is the start of the reply (a prefill): the seed is the request's without it.
    prefill = prefill_of(body)
    seen = cache_blocks(dict(body, messages=body["messages"][:-1])) if prefill else blocks
    prompt_id = hashlib.blake2b(b"\x1f".join(b.key for b in seen), digest_size=16).hexdigest()
    seed = engine.seed_of(model.name, prompt_id, body.get("tool_choice"), body.get("temperature"))
    json_mode = asks_for_json(body)
    tool = forced_tool(body)
    gen = engine.generate(state.config, model, prompt=final_user_text(body), seed=seed,
                          max_tokens=body["max_tokens"], stop=body.get("stop_sequences"),
                          forced_tool=tool, json_mode=json_mode, prefill=prefill,
                          break_schema=tool is not None and state.faults.bad_schema(model))
    if json_mode and not gen.tool_calls and state.faults.bad_json(model):
        gen = engine.json_in_prose(gen, body["max_tokens"])
    state.counters.record(model.name, input_tokens=uncached, output_tokens=gen.output_tokens, cache_read=cache.read,
                          cache_write=cache.write_5m + cache.write_1h)
    return usage_of(uncached, cache, gen.output_tokens), gen


def content_of(gen: engine.Generation) -> list[dict[str, Any]]:
    if gen.tool_calls:
        return [{"type": "tool_use", "id": "toolu_" + c["id"][5:], "name": c["name"], "input": c["arguments"]}
                for c in gen.tool_calls]
    return [{"type": "text", "text": gen.text}]


def message_body(model: str, gen: engine.Generation, usage: dict[str, Any], mid: str) -> dict[str, Any]:
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content_of(gen),
            "stop_reason": STOP[gen.finish], "stop_sequence": gen.stop_sequence, "usage": usage}


async def messages(request: Request) -> Response:
    state = state_of(request)
    state.counters.hit("messages")
    body: dict[str, Any] = {}
    try:
        check_key(request, "anthropic")
        body = await read_json(request, "anthropic")
        model = state.model(body.get("model"))
        delay = state.faults.before_call(model)
        usage, gen = run_message(state, body)
    except SimError as exc:
        state.record_error(body.get("model"))
        return exc.anthropic()
    mid = "msg_" + uuid.uuid4().hex[:24]
    if body.get("stream"):
        return StreamingResponse(stream_events(state, model, gen, usage, mid, delay),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})
    await asyncio.sleep(delay + (model.ttft_ms + model.per_token_ms * gen.output_tokens) / 1000.0)
    return JSONResponse(message_body(model.name, gen, usage, mid))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_events(state: SimState, model: Any, gen: engine.Generation, usage: dict[str, Any], mid: str,
                        delay: float) -> AsyncIterator[bytes]:
    await asyncio.sleep(delay + model.ttft_ms / 1000.0)
    start = message_body(model.name, gen, dict(usage, output_tokens=1), mid)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    yield _event("message_start", {"type": "message_start", "message": start})
    drop = state.faults.drop_stream(model)
    stall = state.faults.stall_stream(model)
    per_token = model.per_token_ms / 1000.0
    for index, block in enumerate(content_of(gen)):
        if block["type"] == "tool_use":
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": dict(block, input={})})
            args = orjson.dumps(block["input"]).decode()
            for k in range(0, len(args), 16):
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": args[k:k + 16]}})
        else:
            yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "text", "text": ""}})
            yield _event("ping", {"type": "ping"})
            words = block["text"].split(" ")
            for n, word in enumerate(words):
                if drop and n >= len(words) // 2:
                    raise ConnectionResetError("simulated dropped stream")
                if stall and n >= len(words) // 2:  # silent for a while, the connection kept open
                    await asyncio.sleep(stall)
                    stall = 0.0
                piece = word if n == 0 else " " + word
                if per_token:
                    await asyncio.sleep(per_token * count_tokens(piece))
                if piece:
                    yield _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                         "delta": {"type": "text_delta", "text": piece}})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    final_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                         "output_tokens")}
    yield _event("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": STOP[gen.finish], "stop_sequence": gen.stop_sequence}, "usage": final_usage})
    yield _event("message_stop", {"type": "message_stop"})


async def count_tokens_endpoint(request: Request) -> Response:
    state = state_of(request)
    state.counters.hit("messages.count_tokens")
    try:
        check_key(request, "anthropic")
        body = await read_json(request, "anthropic")
        state.faults.before_call(state.model(body.get("model")))  # overloaded or rate-limited like any call
        validate(dict(body, max_tokens=1))
        total = sum(b.tokens for b in cache_blocks(body))
    except SimError as exc:
        return exc.anthropic()
    return JSONResponse({"input_tokens": total})


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens_endpoint, methods=["POST"]),
    ]
