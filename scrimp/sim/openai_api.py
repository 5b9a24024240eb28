"""OpenAI wire API: chat completions (streaming too), embeddings, models."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scrimp.sim import engine, flex
from scrimp.sim.app import SimState, check_key, read_json, state_of
from scrimp.sim.errors import SimError, invalid
from scrimp.tokens import MESSAGE_OVERHEAD, REPLY_PRIMING, count_tokens, tokenize, tool_text

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}


def content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or "type" not in part:
                raise invalid(f"Invalid value for '{where}[{j}]': expected an object with a 'type'.", f"{where}[{j}]")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise invalid(f"Missing required parameter: '{where}[{j}].text'.", f"{where}[{j}].text")
                parts.append(part["text"])
            elif part["type"] == "image_url":
                parts.append("image " * 85)
        return "\n".join(parts)
    raise invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)


def validate(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise invalid("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("Invalid 'messages': expected a non-empty array.", "messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        if msg.get("role") not in ROLES:
            raise invalid(f"Invalid value for 'messages[{i}].role': {msg.get('role')!r}.", f"messages[{i}].role")
        content_text(msg.get("content"), f"messages[{i}].content")
    for key in ("max_tokens", "max_completion_tokens", "n", "seed"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(f"Invalid type for '{key}': expected an integer, but got {type(value).__name__}.", key)
        if key in ("max_tokens", "max_completion_tokens", "n") and value is not None and value < 1:
            raise invalid(f"Invalid '{key}': integer below minimum value. Expected a value >= 1, but got {value}.", key)
    for key, hi in (("temperature", 2.0), ("top_p", 1.0)):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise invalid(f"Invalid type for '{key}': expected a number.", key)
            if not 0 <= value <= hi:
                raise invalid(f"Invalid '{key}': must be between 0 and {hi}.", key)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
        isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)
    ):
        raise invalid("Invalid 'stop': expected a string or an array of at most 4 strings.", "stop")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("Invalid type for 'tools': expected an array.", "tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise invalid(f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}].function")
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise invalid("Invalid 'response_format.type'.", "response_format.type")
        if fmt["type"] == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
            raise invalid("Missing required parameter: 'response_format.json_schema.schema'.",
                          "response_format.json_schema")


def prompt_tokens(body: dict[str, Any]) -> list[str]:
    """The prompt as the model sees it, in order: tool definitions first, then each message with its framing.
    Used both for usage counts and for prefix-cache matching."""
    out: list[str] = []
    for tool in body.get("tools") or []:
        out.extend(tokenize(tool_text(tool["function"])))
    for msg in body["messages"]:
        out.extend([f"<|{msg['role']}|>"] + ["<|sep|>"] * (MESSAGE_OVERHEAD - 1))
        out.extend(tokenize(content_text(msg.get("content"), "content")))
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            out.extend(tokenize(f"{fn.get('name', '')} {fn.get('arguments', '')}"))
    out.extend(["<|assistant|>"] * REPLY_PRIMING)
    return out


def final_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg["role"] == "user":
            return content_text(msg.get("content"), "content")
    return ""


def prefill_of(body: dict[str, Any]) -> str:
    """The text of a final assistant message (the start of the reply, which the model goes on from)."""
    last = body["messages"][-1]
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return ""
    return content_text(last.get("content"), "content")


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    if choice == "required":
        fn = tools[0]["function"]
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        match = [t["function"] for t in tools if t["function"]["name"] == name]
        if not match:
            raise invalid(f"Invalid 'tool_choice': no tool named {name!r}.", "tool_choice")
        fn = match[0]
    else:
        raise invalid("Invalid value for 'tool_choice'.", "tool_choice")
    return {"name": fn["name"], "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}


def usage_block(prompt: int, cached: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def message_of(gen: engine.Generation) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": gen.text if not gen.tool_calls else None,
                           "refusal": None, "annotations": []}
    if gen.tool_calls:
        msg["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": orjson.dumps(c["arguments"]).decode()}}
            for c in gen.tool_calls
        ]
    return msg


def run_completion(state: SimState, body: dict[str, Any]) -> tuple[dict[str, Any], list[engine.Generation], int]:
    """Validate, account and generate one chat completion. Returns (usage, generations, output_tokens).

    Shared by the endpoint and the Batch API so batched results equal per-request ones."""
    model = state.model(body.get("model"))
    validate(body)
    for key in model.rejects:
        if body.get(key) is not None:
            hint = " Use 'max_completion_tokens' instead." if key == "max_tokens" else ""
            raise invalid(f"Unsupported parameter: '{key}' is not supported with this model.{hint}", key)
    effort = body.get("reasoning_effort")
    if effort is not None and not model.reasoning:
        raise invalid("Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                      "reasoning_effort")
    if effort is not None and (not isinstance(effort, str) or effort not in engine.EFFORTS):
        raise invalid(f"Invalid value: {effort!r}. Supported values are: {', '.join(map(repr, engine.EFFORTS))}.",
                      "reasoning_effort")
    tokens = prompt_tokens(body)
    n_prompt = len(tokens)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if n_prompt + (max_tokens or 0) > model.context_window:
        raise SimError(400, f"This model's maximum context length is {model.context_window} tokens. However, "
                            f"you requested {n_prompt + (max_tokens or 0)} tokens.",
                       param="messages", code="context_length_exceeded")
    state.limiter.check(model, n_prompt + (max_tokens or 0))
    cached = state.openai_cache.lookup_and_store(model.name, body.get("prompt_cache_key"), tokens)
    fmt = body.get("response_format") or {}
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    # Stop sequences and max_tokens cut a reply; they do not change it, so they are not part of the seed.
    prefill = prefill_of(body)
    seen = prompt_tokens(dict(body, messages=body["messages"][:-1])) if prefill else tokens
    seed = engine.seed_of(model.name, seen, fmt,
                          body.get("temperature"), body.get("seed"))
    tool = forced_tool(body)
    schema_fault = bool(tool is not None or fmt.get("type") == "json_schema") and state.faults.bad_schema(model)
    gens = []
    for i in range(body.get("n") or 1):
        # A reasoning model thinks first; its hidden tokens count against max_tokens, and may use all of it.
        thought = engine.reasoning_tokens(seed + i, effort) if model.reasoning else 0
        budget = max_tokens
        if max_tokens is not None:
            thought = min(thought, max_tokens)
            budget = max_tokens - thought
        if budget == 0:
            gen = engine.Generation(finish="length")
        else:
            gen = engine.generate(state.config, model, prompt=final_user_text(body), seed=seed + i,
                                  max_tokens=budget, stop=stops,
                                  json_schema=(fmt.get("json_schema") or {}).get("schema")
                                  if fmt.get("type") == "json_schema" else None,
                                  json_mode=fmt.get("type") == "json_object", forced_tool=tool,
                                  prefill=prefill, break_schema=schema_fault)
        gen.reasoning_tokens = thought
        gens.append(gen)
    reasoning = sum(g.reasoning_tokens for g in gens)
    out = sum(g.output_tokens for g in gens) + reasoning
    state.counters.record(model.name, input_tokens=n_prompt - cached, output_tokens=out, cache_read=cached,
                          cache_write=n_prompt - cached if n_prompt >= 1024 else 0)
    return usage_block(n_prompt, cached, out, reasoning), gens, out


def completion_body(model: str, gens: list[engine.Generation], usage: dict[str, Any], cid: str) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": message_of(g), "logprobs": None, "finish_reason": FINISH[g.finish]}
                    for i, g in enumerate(gens)],
        "usage": usage, "service_tier": "default", "system_fingerprint": "fp_scrimp_sim",
    }


async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    state.counters.hit("chat.completions")
    body: dict[str, Any] = {}
    try:
        check_key(request, "openai")
        body = await read_json(request, "openai")
        model = state.model(body.get("model"))
        delay = state.faults.before_call(model) + flex.admit(state, body)
        usage, gens, out = run_completion(state, body)
    except SimError as exc:
        state.record_error(body.get("model"))
        return exc.openai()
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            stream_chunks(state, model, gens, usage, cid, include_usage, delay),
            media_type="text/event-stream", headers={"cache-control": "no-cache"},
        )
    await asyncio.sleep(delay + (model.ttft_ms + model.per_token_ms * out) / 1000.0)
    return JSONResponse({**completion_body(model.name, gens, usage, cid), "service_tier": flex.tier(body)})


def _pieces(text: str) -> list[str]:
    """Split a reply into stream deltas of about one token each, keeping the exact text."""
    out: list[str] = []
    for word in text.split(" "):
        out.append(word if not out else " " + word)
    return [p for p in out if p] or [""]


async def stream_chunks(state: SimState, model: Any, gens: list[engine.Generation], usage: dict[str, Any],
                        cid: str, include_usage: bool, delay: float) -> AsyncIterator[bytes]:
    created = int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model.name,
            "system_fingerprint": "fp_scrimp_sim", "service_tier": "default"}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = dict(base, choices=[{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            body["usage"] = None
        return b"data: " + orjson.dumps(body) + b"\n\n"

    await asyncio.sleep(delay + model.ttft_ms / 1000.0)
    drop = state.faults.drop_stream(model)
    stall = state.faults.stall_stream(model)
    per_token = model.per_token_ms / 1000.0
    for i, gen in enumerate(gens):
        if per_token and gen.reasoning_tokens:  # a reasoning model thinks before its first visible token
            await asyncio.sleep(per_token * gen.reasoning_tokens)
        yield chunk(i, {"role": "assistant", "content": "" if not gen.tool_calls else None, "refusal": None})
        if gen.tool_calls:
            for j, call in enumerate(gen.tool_calls):
                args = orjson.dumps(call["arguments"]).decode()
                yield chunk(i, {"tool_calls": [{"index": j, "id": call["id"], "type": "function",
                                                "function": {"name": call["name"], "arguments": ""}}]})
                for k in range(0, len(args), 16):
                    yield chunk(i, {"tool_calls": [{"index": j, "function": {"arguments": args[k:k + 16]}}]})
        else:
            pieces = _pieces(gen.text)
            for n, piece in enumerate(pieces):
                if drop and n >= len(pieces) // 2:
                    # A dropped connection: the client sees the stream end without a final event.
                    raise ConnectionResetError("simulated dropped stream")
                if stall and n >= len(pieces) // 2:  # silent for a while, the connection kept open
                    await asyncio.sleep(stall)
                    stall = 0.0
                if per_token:
                    await asyncio.sleep(per_token * count_tokens(piece))
                yield chunk(i, {"content": piece})
        yield chunk(i, {}, FINISH[gen.finish])
    if include_usage:
        yield b"data: " + orjson.dumps(dict(base, choices=[], usage=usage)) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def embeddings(request: Request) -> Response:
    state = state_of(request)
    state.counters.hit("embeddings")
    try:
        check_key(request, "openai")
        body = await read_json(request, "openai")
        model = state.model(body.get("model"), kind="embedding")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, (str, list)) for x in inputs):
            raise invalid("Invalid 'input': expected a string or an array of strings.", "input")
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
        dims = body.get("dimensions") or model.dimensions
        if not isinstance(dims, int) or dims < 1 or dims > model.dimensions:
            raise invalid(f"Invalid 'dimensions': must be between 1 and {model.dimensions}.", "dimensions")
        n_tokens = sum(count_tokens(t) for t in texts)
        if any(count_tokens(t) > model.context_window for t in texts):
            raise invalid(f"This model's maximum context length is {model.context_window} tokens.", "input")
        state.limiter.check(model, n_tokens)
        state.faults.before_call(model)
    except SimError as exc:
        return exc.openai()
    encoding = body.get("encoding_format", "float")
    data = []
    for i, text in enumerate(texts):
        vec = engine.embed(text, model.dimensions)[:dims]
        if dims != model.dimensions:
            norm = float(np.linalg.norm(vec)) or 1.0
            vec = [v / norm for v in vec]
        value: Any = vec
        if encoding == "base64":
            value = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    state.counters.record(model.name, input_tokens=n_tokens)
    return JSONResponse({"object": "list", "data": data, "model": model.name,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


async def list_models(request: Request) -> Response:
    state = state_of(request)
    models = list(state.config.models.values())
    if request.headers.get("anthropic-version"):
        data = [{"type": "model", "id": m.name, "display_name": m.name, "created_at": "2025-01-01T00:00:00Z"}
                for m in models if m.provider == "anthropic"]
        return JSONResponse({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
    return JSONResponse({"object": "list", "data": [
        {"id": m.name, "object": "model", "created": 1700000000, "owned_by": m.provider} for m in models]})


async def get_model(request: Request) -> Response:
    state = state_of(request)
    name = request.path_params["name"]
    model = state.config.model(name)
    if model is None:
        return SimError(404, f"The model '{name}' does not exist", code="model_not_found").openai()
    return JSONResponse({"id": model.name, "object": "model", "created": 1700000000, "owned_by": model.provider})


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name:path}", get_model, methods=["GET"]),
    ]
