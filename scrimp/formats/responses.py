"""OpenAI Responses API <-> canonical.

A request's `input` items (messages, `function_call`, `function_call_output`) become canonical turns, its
`instructions` and system/developer messages the canonical system, function `tools`, `tool_choice` and
`text.format` their canonical equivalents. The answer becomes a Response object whose `output` holds one item
per canonical block: a `message` with an `output_text` part for text, a `function_call` for a tool call.

The client's own body is kept on the canonical request (`Native`): an OpenAI model is sent it through OpenAI's
Responses API (scrimp.formats.responses_upstream), so hosted tools (web_search, file_search, ...), a
`tool_choice` naming one and the items only OpenAI knows (web_search_call, ...) pass through to it untouched.
The canonical request holds the rest; for an Anthropic model those are refused with a 400 naming them
(`Native.only_openai`). Background mode, conversations, prompt templates, file and audio inputs, item
references and logprobs are refused for every model; `reasoning` items reach an OpenAI model only (the
canonical request leaves them out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.formats.errors import APIError, invalid
from scrimp.formats.openai import _int, _number, check_model
from scrimp.pipeline import new_request_id

# Fields the Response object repeats back as they were sent (with OpenAI's defaults).
_ECHOED = {"instructions": None, "max_output_tokens": None, "max_tool_calls": None, "metadata": {},
           "parallel_tool_calls": True, "previous_response_id": None, "prompt_cache_key": None,
           "reasoning": {"effort": None, "summary": None}, "safety_identifier": None, "service_tier": "auto",
           "store": True, "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
           "top_p": None, "truncation": "disabled", "user": None}
# Read apart from the echo, or accepted with no effect on the answer (`include`, `stream_options`).
_OTHERS = {"model", "input", "stream", "tools", "background", "stream_options", "include"}
# Refused when set: scrimp cannot serve them through a translated call.
_REFUSED = {"conversation": "conversations", "prompt": "prompt templates", "context_management": "context management",
            "moderation": "moderation", "image": "image options", "access_programs": "access programs",
            "background_options": "background mode", "prompt_cache_options": "prompt cache options",
            "top_logprobs": "logprobs"}
# Passed to an OpenAI upstream as the Chat Completions parameter of the same meaning.
_TO_CHAT = {"safety_identifier": "safety_identifier", "service_tier": "service_tier",
            "prompt_cache_retention": "prompt_cache_retention"}
MIN_OUTPUT_TOKENS = 16  # OpenAI's floor for max_output_tokens


# Parameters that change an OpenAI model's answer but have no canonical field (part of a cache key when set).
_NATIVE_PARAMS = ("include", "truncation", "max_tool_calls", "reasoning")


@dataclass
class Native:
    """A Responses request as its client sent it, for an OpenAI upstream's own Responses API.

    `body` is the client's body; `history` the items of the earlier turns scrimp resolved for
    `previous_response_id`. `system`, `messages` and `tools` are the canonical request's as parsed: a stage that
    changed them makes the upstream input rebuilt from the canonical request. `only_openai` is what an Anthropic
    model cannot be given (hosted tools, their items), each as the error that refuses it; `opaque` what changes
    the answer beyond the canonical request (hosted tools, their items, `include`, ...), for cache keys."""

    body: dict[str, Any]
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    only_openai: list[APIError] = field(default_factory=list)
    opaque: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResponsesRequest:
    """A parsed Responses request: the canonical request for its own input, the input items (normalised, each
    with an id) to store and list, and what the Response object echoes."""

    request: ChatRequest
    items: list[dict[str, Any]]
    echo: dict[str, Any]
    instructions: list[dict[str, Any]] = field(default_factory=list)  # system blocks; not carried to a follow-up

    @property
    def previous_response_id(self) -> str | None:
        return self.echo["previous_response_id"]

    @property
    def store(self) -> bool:
        return bool(self.echo["store"])

    def continued(self, history: list[dict[str, Any]]) -> ChatRequest:
        """The canonical request with an earlier conversation's items (input and output) before this one's."""
        system, turns = to_canonical(history + self.items)
        system = self.instructions + system
        native = self.request.native
        opaque = dict(native.opaque)
        earlier = [_keyed(item) for item in history if item.get("type") not in _TRANSLATED]
        if earlier:
            opaque["history"] = earlier
        native = dataclasses.replace(native, history=history, system=system, messages=turns, opaque=opaque)
        return dataclasses.replace(self.request, system=system, messages=turns, native=native)


def item_id(prefix: str) -> str:
    return f"{prefix}_{new_request_id()[4:]}"


def parse_request(body: dict[str, Any]) -> ResponsesRequest:
    """A client's Responses request, checked; the client's own error (OpenAI's words) for bad input."""
    model = check_model(body)
    for key, value in body.items():
        if key in _REFUSED and value is not None:
            raise APIError(400, f"'{key}' ({_REFUSED[key]}) is not supported by scrimp's Responses API.",
                           param=key, code="unsupported_parameter")
        if key not in _ECHOED and key not in _OTHERS and key not in _REFUSED and key not in _TO_CHAT:
            raise APIError(400, f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    if body.get("background"):
        raise APIError(400, "'background': true is not supported by scrimp: responses are answered while the "
                            "request waits (or streams).", param="background", code="unsupported_parameter")
    raw_input = body.get("input")
    if raw_input is None and not body.get("previous_response_id"):
        raise invalid("Missing required parameter: 'input'.", "input")
    only_openai: list[APIError] = []
    items = normalise_input(raw_input, only_openai)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("Invalid type for 'instructions': expected a string.", "instructions")
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise invalid("Invalid type for 'previous_response_id': expected a string.", "previous_response_id")
    for key in ("store", "stream", "parallel_tool_calls"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise invalid(f"Invalid type for '{key}': expected a boolean.", key)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise invalid("Invalid 'metadata': expected an object of string values.", "metadata")
    tools, echo_tools, hosted = _tools(body.get("tools"), only_openai)
    fmt, text = _text_format(body.get("text"))
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid("Invalid type for 'reasoning': expected an object.", "reasoning")
    extra = {chat: body[key] for key, chat in _TO_CHAT.items() if body.get(key) is not None}
    if reasoning and reasoning.get("effort"):
        extra["reasoning_effort"] = reasoning["effort"]
    if text.get("verbosity"):
        extra["verbosity"] = text["verbosity"]
    choice, hosted_choice = _tool_choice(body.get("tool_choice"), only_openai)
    if body.get("parallel_tool_calls") is False and tools:
        extra["parallel_tool_calls"] = False
        if (choice or {}).get("type") != "none":  # Anthropic's way of saying it
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    user = body.get("user") if isinstance(body.get("user"), str) else None
    cache_key = body.get("prompt_cache_key")
    if cache_key is not None and not isinstance(cache_key, str):
        raise invalid("Invalid type for 'prompt_cache_key': expected a string.", "prompt_cache_key")
    system, turns = to_canonical(items)
    instruction_blocks = [{"type": "text", "text": instructions}] if instructions else []
    req = ChatRequest(
        model=model, messages=turns, system=instruction_blocks + system, tools=tools, tool_choice=choice,
        max_tokens=_int(body, "max_output_tokens", minimum=MIN_OUTPUT_TOKENS),
        temperature=_number(body, "temperature", 2.0), top_p=_number(body, "top_p", 1.0), response_format=fmt,
        stream=bool(body.get("stream")), include_usage=True, user=user, metadata=metadata,
        prompt_cache_key=cache_key, extra=extra, inbound="responses")
    opaque: dict[str, Any] = {key: body[key] for key in _NATIVE_PARAMS if body.get(key) is not None}
    if hosted:
        opaque["tools"] = hosted
    if hosted_choice is not None:
        opaque["tool_choice"] = hosted_choice
    own = [_keyed(item) for item in items if item["type"] not in _TRANSLATED]
    if own:
        opaque["items"] = own
    req.native = Native(body, req.system, req.messages, req.tools, only_openai=only_openai, opaque=opaque)
    echo = {key: body[key] if body.get(key) is not None else default for key, default in _ECHOED.items()}
    echo.update(tools=echo_tools, text={**_ECHOED["text"], **text}, metadata=metadata)
    if reasoning:
        echo["reasoning"] = {**_ECHOED["reasoning"], **reasoning}
    return ResponsesRequest(req, items, echo, instruction_blocks)


# -- input items ----------------------------------------------------------------------------------------------

_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TRANSLATED = ("message", "function_call", "function_call_output")  # the item types the canonical model holds


def _keyed(item: dict[str, Any]) -> dict[str, Any]:
    """An item as part of a cache key: its id is the upstream's name for it, not what it says."""
    return {k: v for k, v in item.items() if k != "id"}


def normalise_input(raw: Any, only_openai: list[APIError] | None = None) -> list[dict[str, Any]]:
    """`input` as a list of items in their full form, each with an id (what `input_items` lists). Items only
    OpenAI's Responses API takes (hosted tool calls and their outputs, reasoning) are kept as they are; the ones
    an Anthropic model cannot be given are added to `only_openai` as the error that refuses them."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'input': expected a string or an array of input items.", "input")
    items = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            items.append(_message(item, where))
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
            items.append({"type": "function_call", "id": _id(item, "fc"), "call_id": item["call_id"],
                          "name": item["name"], "arguments": item["arguments"], "status": "completed"})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise invalid(f"Missing required parameter: '{where}.call_id'.", f"{where}.call_id")
            items.append({"type": "function_call_output", "id": _id(item, "fco"), "call_id": item["call_id"],
                          "output": _tool_output(item.get("output"), f"{where}.output"), "status": "completed"})
        elif kind == "item_reference":
            raise APIError(400, f"Input item type '{kind}' at '{where}' is not supported by scrimp: item references "
                                "(send the item itself).", param=f"{where}.type", code="unsupported_value")
        elif isinstance(kind, str) and kind:
            # An OpenAI model's own item (a reasoning item, a hosted tool call or its output): passed to OpenAI
            # as it is; a reasoning item is left out for an Anthropic model, any other is refused for one.
            items.append(item)
            if kind != "reasoning" and only_openai is not None:
                only_openai.append(APIError(
                    400, f"Input item type '{kind}' at '{where}' is not supported by scrimp for an Anthropic model: "
                         "only messages, function_call and function_call_output items are translated (an OpenAI "
                         "model is given it as it is).", param=f"{where}.type", code="unsupported_value"))
        else:
            raise invalid(f"Invalid value for '{where}.type': {kind!r}.", f"{where}.type")
    return items


def _id(item: dict[str, Any], prefix: str) -> str:
    return item["id"] if isinstance(item.get("id"), str) and item["id"] else item_id(prefix)


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise invalid(f"Invalid value for '{where}.role': {role!r}. Supported values are: 'user', 'assistant', "
                      "'system' and 'developer'.", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}.content': expected a string or an array of content parts.",
                      f"{where}.content")
    parts = [_part(part, role, f"{where}.content[{j}]") for j, part in enumerate(content)]
    return {"type": "message", "id": _id(item, "msg"), "role": role, "content": parts, "status": "completed"}


def _part(part: Any, role: str, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise invalid(f"Missing required parameter: '{where}.text'.", f"{where}.text")
        if role == "assistant":
            return {"type": "output_text", "text": part["text"], "annotations": []}
        return {"type": "input_text", "text": part["text"]}
    if kind == "refusal" and role == "assistant" and isinstance(part.get("refusal"), str):
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "input_image" and role != "assistant":
        if not isinstance(part.get("image_url"), str):
            raise APIError(400, f"'{where}': only images given by 'image_url' (a URL or a data URL) are supported "
                                "by scrimp, not 'file_id'.", param=f"{where}.image_url", code="unsupported_value")
        return {"type": "input_image", "image_url": part["image_url"], "detail": part.get("detail") or "auto"}
    if kind in ("input_file", "input_audio"):
        raise APIError(400, f"Content part type '{kind}' at '{where}' is not supported by scrimp.",
                       param=f"{where}.type", code="unsupported_value")
    raise invalid(f"Invalid content part at '{where}'.", where)


def _tool_output(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
                raise APIError(400, f"'{where}[{j}]': only text tool outputs are supported by scrimp.",
                               param=f"{where}[{j}]", code="unsupported_value")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise invalid(f"Missing required parameter: '{where}'.", where)


def to_canonical(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Normalised items -> (system blocks, canonical turns); consecutive blocks of one role share a turn."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": role, "content": [block]})

    for item in items:
        kind = item["type"]
        if kind not in _TRANSLATED:
            continue  # an OpenAI model's own item: given to OpenAI natively, no canonical form
        if kind == "function_call":
            add("assistant", {"type": "tool_use", "id": item["call_id"], "name": item["name"],
                              "input": _arguments(item["arguments"])})
        elif kind == "function_call_output":
            add("user", {"type": "tool_result", "tool_use_id": item["call_id"], "content": item["output"]})
        elif item["role"] in ("system", "developer"):
            system.extend({"type": "text", "text": p["text"]} for p in item["content"] if "text" in p)
        else:
            role = "assistant" if item["role"] == "assistant" else "user"
            for part in item["content"]:
                block = _block(part)
                if block is not None:
                    add(role, block)
    return system, turns


def _block(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        url = part["image_url"]
        if url.startswith("data:") and ";base64," in url:
            media, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _arguments(raw: str) -> Any:
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": raw}


# -- tools, tool choice, text format -----------------------------------------------------------------------------

def _tools(raw: Any, only_openai: list[APIError]) \
        -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Function tools as canonical tools; every tool as the Response echoes it; the hosted tools (web_search,
    file_search, ...), which only an OpenAI model is given (refused for an Anthropic one)."""
    if raw is None:
        return [], [], []
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'tools': expected an array.", "tools")
    tools, echo, hosted = [], [], []
    for i, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or not kind:
            raise invalid(f"Missing required parameter: 'tools[{i}].type'.", f"tools[{i}].type")
        if kind != "function":
            only_openai.append(APIError(
                400, f"Tool type '{kind}' at 'tools[{i}]' is not supported by scrimp for an Anthropic model: only "
                     "function tools are translated (hosted tools such as web_search, file_search, "
                     "code_interpreter and computer_use_preview are passed to OpenAI models only).",
                param=f"tools[{i}].type", code="unsupported_value"))
            hosted.append(tool)
            echo.append(tool)
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise invalid(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        schema = tool.get("parameters") or {"type": "object", "properties": {}}
        tools.append({"name": tool["name"], "description": tool.get("description") or "", "input_schema": schema})
        echo.append({"type": "function", "name": tool["name"], "description": tool.get("description"),
                     "parameters": tool.get("parameters"), "strict": tool.get("strict")})
    return tools, echo, hosted


def _tool_choice(choice: Any, only_openai: list[APIError]) -> tuple[dict[str, Any] | None, Any]:
    """The canonical tool choice, and a choice only an OpenAI model understands (a hosted tool, allowed_tools,
    ...: canonical "auto"; refused for an Anthropic model)."""
    if choice is None:
        return None, None
    if choice in ("auto", "none"):
        return {"type": choice}, None
    if choice == "required":
        return {"type": "any"}, None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("name"), str):
        return {"type": "tool", "name": choice["name"]}, None
    if isinstance(kind, str) and kind and kind != "function":
        only_openai.append(APIError(
            400, f"Invalid value for 'tool_choice': {kind!r} for an Anthropic model (scrimp translates 'auto', "
                 "'none', 'required' and a function by name; other choices are passed to OpenAI models only).",
            param="tool_choice", code="unsupported_value"))
        return None, choice
    raise APIError(400, f"Invalid value for 'tool_choice': {kind or choice!r} (scrimp supports 'auto', 'none', "
                        "'required', a function by name and, for an OpenAI model, a hosted tool).",
                   param="tool_choice", code="unsupported_value")


def _text_format(text: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`text.format` as a canonical (Chat Completions) response_format, and the `text` object to echo."""
    if text is None:
        return None, {}
    if not isinstance(text, dict):
        raise invalid("Invalid type for 'text': expected an object.", "text")
    fmt = text.get("format")
    if fmt is None:
        return None, dict(text)
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, dict(text)
    if kind == "json_object":
        return {"type": "json_object"}, dict(text)
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise invalid("Missing required parameter: 'text.format.schema'.", "text.format.schema")
        if not isinstance(fmt.get("name"), str):
            raise invalid("Missing required parameter: 'text.format.name'.", "text.format.name")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": spec}, dict(text)
    raise invalid(f"Invalid value for 'text.format.type': {kind!r}. Supported values are: 'text', 'json_object' "
                  "and 'json_schema'.", "text.format.type")


# -- the Response object -----------------------------------------------------------------------------------------

def skeleton(parsed: ResponsesRequest, response_id: str, created_at: float, model: str) -> dict[str, Any]:
    """The Response object before any output (what `response.created` carries)."""
    return {"id": response_id, "object": "response", "created_at": int(created_at), "status": "in_progress",
            "background": False, "error": None, "incomplete_details": None, "model": model, "output": [],
            **parsed.echo, "usage": None}


def status_of(resp: ChatResponse) -> tuple[str, dict[str, Any] | None]:
    if resp.stop_reason == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if resp.stop_reason == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def message_item(item: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def call_item(item: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def output_items(resp: ChatResponse) -> list[dict[str, Any]]:
    """The upstream's own output items when it answered through the Responses API (hosted tool calls and
    annotations included), else one output item per canonical block (empty text left out)."""
    if resp.output_items is not None:
        return list(resp.output_items)
    status, _ = status_of(resp)
    items = []
    for block in resp.content:
        if block.get("type") == "text" and block.get("text"):
            items.append(message_item(item_id("msg"), block["text"]))
        elif block.get("type") == "tool_use":
            items.append(call_item(item_id("fc"), block.get("id", ""), block.get("name", ""),
                                   orjson.dumps(block.get("input", {})).decode()))
    if status == "incomplete" and items and items[-1]["type"] == "message":
        items[-1]["status"] = "incomplete"
    return items


def finished(base: dict[str, Any], resp: ChatResponse, output: list[dict[str, Any]],
             completed_at: float) -> dict[str, Any]:
    """The complete Response object: `base` (the skeleton) with the answer's output, status and usage."""
    status, details = status_of(resp)
    return {**base, "status": status, "incomplete_details": details, "output": output,
            "completed_at": int(completed_at) if status == "completed" else None, "usage": usage_out(resp.usage)}


def usage_out(u: Usage) -> dict[str, Any]:
    """Responses usage: input_tokens count every input token, cached and cache-written ones included."""
    return {"input_tokens": u.total_input,
            "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
            "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": u.reasoning},
            "total_tokens": u.total_input + u.output}
