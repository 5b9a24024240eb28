"""What a request's answer must be (a JSON value fitting a schema, or a forced tool call whose arguments fit the
tool's schema) and whether an answer is it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from jsonschema import exceptions, validators

from scrimp.canonical import ChatRequest, ChatResponse

Kind = Literal["json_schema", "json_object", "tool"]


@dataclass
class Expectation:
    kind: Kind
    schema: dict[str, Any] | None = None  # json_schema: the answer's schema
    tools: dict[str, dict[str, Any]] | None = None  # tool: the tools that may be called -> their input schema


def expectation(req: ChatRequest, *, tools: bool = True, json_object: bool = True) -> Expectation | None:
    fmt = req.response_format or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return Expectation("json_schema", schema if isinstance(schema, dict) else {})
    if fmt.get("type") == "json_object" and json_object:
        return Expectation("json_object", {"type": "object"})
    choice = req.tool_choice or {}
    if tools and req.tools and choice.get("type") in ("any", "tool"):
        allowed = {t["name"]: t.get("input_schema") or {"type": "object"} for t in req.tools
                   if "name" in t and (choice["type"] == "any" or t["name"] == choice.get("name"))}
        return Expectation("tool", tools=allowed) if allowed else None
    return None


@functools.lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Any:
    """A validator for the schema (its $schema's draft, 2020-12 by default); SchemaError when it is no schema."""
    schema = orjson.loads(schema_json)
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not fit `schema` (the most relevant error, with where), or None."""
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    error = exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{'$' + where if where else 'the top level'}: {error.message}"


def usable(exp: Expectation) -> bool:
    """Whether the client's schemas are schemas at all (one that is not is not checked)."""
    try:
        for schema in [exp.schema] if exp.tools is None else list(exp.tools.values()):
            _validator(orjson.dumps(schema or {}, option=orjson.OPT_SORT_KEYS))
    except exceptions.SchemaError:
        return False
    return True


def _json_text(text: str) -> str:
    """The answer without a Markdown code fence around it."""
    text = text.strip()
    if text.startswith("```") and text.rstrip().endswith("```") and "\n" in text:
        return text[text.find("\n") + 1:].rstrip()[:-3].strip()
    return text


def problem(resp: ChatResponse, exp: Expectation) -> str | None:
    """Why the answer is not what was asked for, or None when it is."""
    if exp.kind == "tool":
        assert exp.tools is not None
        calls = [b for b in resp.content if b.get("type") == "tool_use"]
        if not calls:
            return "no tool call, though the request forced one"
        for block in calls:
            schema = exp.tools.get(block.get("name", ""))
            if schema is None:
                return f"a call of {block.get('name')!r}, which is not a tool the request allowed"
            found = schema_problem(block.get("input"), schema)
            if found is not None:
                return f"arguments of {block['name']}: {found}"
        return None
    try:
        value = orjson.loads(_json_text(resp.text()))
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({str(exc).split(':')[0]})"
    return schema_problem(value, exp.schema or {})
