"""The Responses API's request, checked and translated into the chat path's request.

`plan(state, model, body)` validates a `POST /v1/responses` body the way OpenAI does (errors name the
Responses parameter), rebuilds the conversation (`previous_response_id` + `input`) as stored items, and
returns the equivalent chat-completions body, so `openai_api.run_completion` answers it: the same tokens,
prompt cache, rate limits, replies and counters as the chat endpoint.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from scrimp.sim import engine, web_search
from scrimp.sim.app import SimState
from scrimp.sim.config import ModelConfig
from scrimp.sim.errors import SimError, invalid

KNOWN = {
    "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "temperature", "top_p",
    "reasoning", "store", "metadata", "previous_response_id", "prompt_cache_key", "prompt_cache_retention",
    "prompt_cache_options", "stream", "stream_options", "parallel_tool_calls", "include", "truncation", "user",
    "safety_identifier", "service_tier", "top_logprobs", "max_tool_calls", "background", "background_options",
    "conversation", "prompt", "context_management", "access_programs", "image", "moderation",
}
# Accepted by OpenAI, not simulated: refused when set, rather than silently ignored.
NOT_SIMULATED = ("background", "conversation", "prompt", "context_management")
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
MAX_STORED = 10_000  # stored responses kept per simulator (the oldest are forgotten first)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex + uuid.uuid4().hex[:16]


class ResponseStore:
    """Stored responses (`store: true`, the default) and the items they hold, in memory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.responses: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> {"response", "input", "own"}
        self.items: dict[str, dict[str, Any]] = {}  # item id -> item, for `item_reference` inputs

    def put(self, response: dict[str, Any], context: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        own = [i["id"] for i in new + response["output"] if i["id"] not in self.items]
        self.responses[response["id"]] = {"response": response, "input": context, "own": own}
        for item in new + response["output"]:
            self.items.setdefault(item["id"], item)
        while len(self.responses) > MAX_STORED:
            self.delete(next(iter(self.responses)))

    def get(self, rid: str) -> dict[str, Any] | None:
        return self.responses.get(rid)

    def delete(self, rid: str) -> bool:
        entry = self.responses.pop(rid, None)
        for item_id in entry["own"] if entry else []:
            self.items.pop(item_id, None)
        return entry is not None


def store_of(state: SimState) -> ResponseStore:
    store = state.extras.get("responses")
    if store is None:
        store = state.extras["responses"] = ResponseStore()
    return store


@dataclass
class Plan:
    chat: dict[str, Any]  # the equivalent chat-completions body
    context: list[dict[str, Any]]  # every item the model sees after the instructions (GET .../input_items)
    new: list[dict[str, Any]]  # this request's own input items
    echo: dict[str, Any]  # request fields the Response object repeats
    include: list[str]  # extra output asked for ("reasoning.encrypted_content")
    search: str | None = None  # the query of the web search the model makes first (scrimp.sim.web_search)


def _parts(content: Any, where: str, role: str) -> list[dict[str, Any]]:
    allowed = OUTPUT_PARTS if role == "assistant" else INPUT_PARTS
    if isinstance(content, str):
        if role == "assistant":
            return [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            listed = ", ".join(f"'{a}'" for a in allowed)
            raise invalid(f"Invalid value: {kind!r}. Supported values are: {listed}.", f"{where}[{j}].type")
        if kind == "input_file":
            raise invalid("Files in 'input' ('input_file') are not supported by the simulator.", f"{where}[{j}]")
        key = {"refusal": "refusal", "input_image": None}.get(kind, "text")
        if key and not isinstance(part.get(key), str):
            raise invalid(f"Missing required parameter: '{where}[{j}].{key}'.", f"{where}[{j}].{key}")
        parts.append(dict(part))
    return parts


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
    return value


def input_items(raw: Any, store: ResponseStore) -> list[dict[str, Any]]:
    """`input` as stored items (with ids), the shapes `GET /v1/responses/{id}/input_items` lists."""
    if isinstance(raw, str):
        return [{"id": new_id("msg_"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'input': expected a string or an array of input items.", "input")
    items: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(f"Invalid value: {role!r}. Supported values are: 'user', 'assistant', 'system', and "
                              "'developer'.", f"{where}.role")
            items.append({"id": item.get("id") or new_id("msg_"), "type": "message", "role": role,
                          "status": item.get("status") or "completed",
                          "content": _parts(item.get("content"), f"{where}.content", role)})
        elif kind == "function_call":
            items.append({"id": item.get("id") or new_id("fc_"), "type": "function_call",
                          "call_id": _string(item, "call_id", where), "name": _string(item, "name", where),
                          "arguments": _string(item, "arguments", where), "status": "completed"})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                if not isinstance(output, list):
                    raise invalid(f"Missing required parameter: '{where}.output'.", f"{where}.output")
                output = _parts(output, f"{where}.output", "user")
            items.append({"id": item.get("id") or new_id("fco_"), "type": "function_call_output",
                          "call_id": _string(item, "call_id", where), "output": output, "status": "completed"})
        elif kind == "reasoning":  # a reasoning item sent back: kept in the conversation, not shown to the model
            items.append({"id": item.get("id") or new_id("rs_"), "type": "reasoning",
                          "summary": item.get("summary") or [],
                          **({"encrypted_content": item["encrypted_content"]} if item.get("encrypted_content")
                             else {})})
        elif kind == "web_search_call":  # an earlier search sent back: kept in the conversation, not shown
            items.append({"id": _string(item, "id", where), "type": "web_search_call",
                          "status": item.get("status") or "completed", "action": item.get("action") or {}})
        elif kind == "item_reference":
            ref = store.items.get(item["id"]) if isinstance(item.get("id"), str) else None
            if ref is None:
                raise invalid(f"Item with id '{item.get('id')}' not found.", f"{where}.id")
            items.append(ref)
        else:
            raise invalid(f"Input items of type {kind!r} are not supported by the simulator (it runs messages, "
                          "function calls and their outputs).", f"{where}.type")
    return items


def _text_of(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    out = []
    for part in parts:
        if part["type"] == "input_image":
            out.append("image " * 85)  # as the chat path counts an image
        else:
            out.append(part.get("text") or part.get("refusal") or "")
    return "\n".join(out)


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as chat messages: instructions first, function calls on the assistant turn before them."""
    msgs: list[dict[str, Any]] = [{"role": "developer", "content": instructions}] if instructions else []
    for item in items:
        if item["type"] == "message":
            msgs.append({"role": item["role"], "content": _text_of(item["content"])})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            if not (msgs and msgs[-1]["role"] == "assistant"):
                msgs.append({"role": "assistant", "content": None})
            msgs[-1].setdefault("tool_calls", []).append(call)
        elif item["type"] == "function_call_output":
            msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": _text_of(item["output"])})
    return msgs


def check_tool_outputs(items: list[dict[str, Any]]) -> None:
    """Every function call answered by an output, every output answering a call (as OpenAI insists)."""
    answered: dict[str, bool] = {}
    for item in items:
        if item["type"] == "function_call":
            answered[item["call_id"]] = False
        elif item["type"] == "function_call_output":
            if item["call_id"] not in answered:
                raise invalid(f"No tool call found for function call output with call_id {item['call_id']}.",
                              "input")
            answered[item["call_id"]] = True
    for call_id, done in answered.items():
        if not done:
            raise invalid(f"No tool output found for function call {call_id}.", "input")


def _tools(tools: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(chat tools, the tools as the Response object echoes them, whether web search is offered). Hosted tools
    other than web search are refused."""
    if tools is None:
        return [], [], False
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", "tools")
    chat, echo, search = [], [], False
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in web_search.TYPES:
            echo.append(web_search.tool(tool, f"tools[{i}]"))
            search = True
            continue
        if kind != "function":
            raise SimError(400, f"Tool type {kind!r} is not supported by the simulator: it runs function tools "
                                "and web_search only (other hosted tools such as file_search are not simulated).",
                           param=f"tools[{i}].type", code="unsupported_value")
        name = _string(tool, "name", f"tools[{i}]")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"Invalid type for 'tools[{i}].parameters': expected an object.", f"tools[{i}].parameters")
        fn = {"name": name, "parameters": params or {"type": "object", "properties": {}}}
        if tool.get("description") is not None:
            fn["description"] = tool["description"]
        chat.append({"type": "function", "function": dict(fn, strict=tool.get("strict", True))})
        echo.append({"type": "function", "name": name, "description": tool.get("description"),
                     "parameters": params, "strict": tool.get("strict", True)})
    return chat, echo, search


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in web_search.TYPES:
        return "web_search"  # the model must search (not a chat tool choice)
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise invalid("Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
                  "{\"type\": \"function\", \"name\": ...} (other choices are not simulated).", "tool_choice")


def _text_format(text: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(chat response_format, the `text` config as echoed)."""
    if text is None:
        text = {}
    if not isinstance(text, dict):
        raise invalid("Invalid type for 'text': expected an object.", "text")
    fmt = text.get("format") or {"type": "text"}
    echo = {"format": fmt, "verbosity": text.get("verbosity") or "medium"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, echo
    if kind == "json_object":
        return {"type": "json_object"}, echo
    if kind == "json_schema":
        name = _string(fmt, "name", "text.format")
        if not isinstance(fmt.get("schema"), dict):
            raise invalid("Missing required parameter: 'text.format.schema'.", "text.format.schema")
        echo["format"] = {"type": "json_schema", "name": name, "schema": fmt["schema"],
                          "description": fmt.get("description"), "strict": fmt.get("strict")}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": fmt["schema"],
                                                       "strict": fmt.get("strict")}}, echo
    raise invalid(f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and 'json_schema'.",
                  "text.format.type")


def _reasoning(model: ModelConfig, reasoning: Any) -> tuple[str | None, dict[str, Any]]:
    if reasoning is None:
        reasoning = {}
    if not isinstance(reasoning, dict):
        raise invalid("Invalid type for 'reasoning': expected an object.", "reasoning")
    effort, summary = reasoning.get("effort"), reasoning.get("summary")
    for key in ("effort", "summary"):
        if reasoning.get(key) is not None and not model.reasoning:
            raise invalid(f"Unsupported parameter: 'reasoning.{key}' is not supported with this model.",
                          f"reasoning.{key}")
    if effort is not None and (not isinstance(effort, str) or effort not in engine.EFFORTS):
        raise invalid(f"Invalid value: {effort!r}. Supported values are: "
                      f"{', '.join(repr(e) for e in engine.EFFORTS)}.", "reasoning.effort")
    if not model.reasoning:
        return None, {"effort": None, "summary": None}
    return effort, {"effort": effort or "medium", "summary": summary}


def _scalars(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0])
    for key in NOT_SIMULATED:
        if body.get(key):
            raise invalid(f"'{key}' is not supported by the simulator.", key)
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise invalid("Invalid type for 'max_output_tokens': expected an integer.", "max_output_tokens")
        if limit < 16:  # the Responses API's floor (chat completions accepts 1)
            raise SimError(400, "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                                f"but got {limit} instead.", param="max_output_tokens", code="integer_below_min_value")
    for key in ("instructions", "previous_response_id", "prompt_cache_key"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise invalid(f"Invalid type for '{key}': expected a string.", key)
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(isinstance(x, str) for x in include)):
        raise invalid("Invalid type for 'include': expected an array of strings.", "include")
    if not isinstance(body.get("store", True), bool):
        raise invalid("Invalid type for 'store': expected a boolean.", "store")
    meta = body.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise invalid("Invalid type for 'metadata': expected an object of strings.", "metadata")
        if len(meta) > 16:
            raise invalid("Invalid 'metadata': too many properties. Expected an object with at most 16 "
                          f"properties, but got {len(meta)} instead.", "metadata")
        if any(len(k) > 64 or len(v) > 512 for k, v in meta.items()):
            raise invalid("Invalid 'metadata': keys are at most 64 characters and values at most 512.", "metadata")


def plan(state: SimState, model: ModelConfig, body: dict[str, Any]) -> Plan:
    _scalars(body)
    store = store_of(state)
    context: list[dict[str, Any]] = []
    prev_id = body.get("previous_response_id")
    if prev_id is not None:
        prev = store.get(prev_id)
        if prev is None:
            raise SimError(400, f"Previous response with id '{prev_id}' not found.", param="previous_response_id",
                           code="previous_response_not_found")
        context = prev["input"] + prev["response"]["output"]
    new = input_items(body["input"], store) if body.get("input") is not None else []
    context = context + new
    if not new and not body.get("instructions") and prev_id is None:
        raise invalid("Missing required parameter: 'input'.", "input")
    check_tool_outputs(context)
    tools, tools_echo, searchable = _tools(body.get("tools"))
    fmt, text_echo = _text_format(body.get("text"))
    effort, reasoning_echo = _reasoning(model, body.get("reasoning"))
    chat: dict[str, Any] = {"model": model.name, "messages": chat_messages(body.get("instructions"), context)}
    if not chat["messages"]:
        raise invalid("Missing required parameter: 'input'.", "input")
    choice = _tool_choice(body.get("tool_choice"))
    if choice == "web_search" and not searchable:
        raise invalid("Tool choice 'web_search' requires a web_search tool in 'tools'.", "tool_choice")
    # A model offered web search searches first, unless told not to or to call a function.
    forced_function = bool(tools) and (choice == "required" or isinstance(choice, dict))
    search = final_text(context) if searchable and choice != "none" and not forced_function else None
    if choice == "web_search" or (choice == "required" and not tools):
        choice = None
    for key, value in (("tools", tools or None), ("tool_choice", choice),
                       ("response_format", fmt), ("max_completion_tokens", body.get("max_output_tokens")),
                       ("temperature", body.get("temperature")), ("top_p", body.get("top_p")),
                       ("prompt_cache_key", body.get("prompt_cache_key")), ("reasoning_effort", effort)):
        if value is not None:
            chat[key] = value
    echo = {
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"), "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": prev_id,
        "prompt_cache_key": body.get("prompt_cache_key"), "reasoning": reasoning_echo,
        "safety_identifier": body.get("safety_identifier"), "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": text_echo,
        "tool_choice": body.get("tool_choice") or "auto", "tools": tools_echo,
        "top_logprobs": body.get("top_logprobs") or 0, "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled", "user": body.get("user"),
    }
    return Plan(chat=chat, context=context, new=new, echo=echo, include=body.get("include") or [], search=search)


def final_text(items: list[dict[str, Any]]) -> str:
    """The last user message's text (what a web search looks for)."""
    for item in reversed(items):
        if item["type"] == "message" and item["role"] == "user":
            return " ".join(p.get("text", "") for p in item["content"] if p.get("type") == "input_text")[:200]
    return ""


# Chat parameter names in errors from the shared chat path, as the Responses API names them.
PARAMS = {"messages": "input", "response_format": "text.format", "max_completion_tokens": "max_output_tokens",
          "reasoning_effort": "reasoning.effort"}


def renamed(exc: SimError) -> SimError:
    if exc.param in PARAMS:
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{PARAMS[exc.param]}'")
        exc.param = PARAMS[exc.param]
    return exc
