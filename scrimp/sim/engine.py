"""Deterministic reply generation and the quality model, shared by both wire APIs and the batch lane.

The same request always gets the same reply (the seed is a hash of the request), so cache and routing
experiments are reproducible. Prompts listed in the workload have a reference answer and a difficulty:
a model answers correctly when its capability reaches the difficulty, and gives a plausible wrong
answer otherwise, so cost *and* quality can be measured end to end.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from scrimp.sim.config import ModelConfig, SimConfig, normalise_prompt
from scrimp.tokens import count_tokens

_WORDS = ["the", "a", "model", "request", "answer", "cost", "cache", "token", "prompt", "user", "system", "value", "result", "team", "feature", "data", "service", "policy", "refund", "order", "account", "support", "price", "plan", "update", "report", "time", "quality", "call", "network", "we", "you", "it", "can", "will", "should", "may", "often", "usually", "first", "then", "also", "because", "which", "when", "while", "after", "check", "review", "send", "keep", "reduce", "improve", "measure", "compare", "return", "explain", "summarise", "handle"]


@dataclass
class Generation:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments": dict}
    finish: str = "stop"  # "stop" | "length" | "stop_sequence" | "tool_calls"
    stop_sequence: str | None = None
    output_tokens: int = 0
    correct: bool | None = None  # for workload prompts: did the model give the reference answer
    reasoning_tokens: int = 0  # reasoning models: hidden tokens spent before the reply (billed as output)


def seed_of(*parts: Any) -> int:
    digest = hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut text to at most max_tokens tokens (whole words); True if it was cut."""
    if count_tokens(text) <= max_tokens:
        return text, False
    out: list[str] = []
    used = 0
    for word in text.split(" "):
        cost = count_tokens(word)
        if used + cost > max_tokens:
            break
        out.append(word)
        used += cost
    return " ".join(out), True


def _sentences(rng: random.Random, n_tokens: int) -> str:
    parts: list[str] = []
    used = 0
    while used < n_tokens:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
        sentence = " ".join(words).capitalize() + "."
        parts.append(sentence)
        used += count_tokens(sentence)
    return " ".join(parts)


def wrong_answer(reference: str, rng: random.Random) -> str:
    """A plausible wrong answer: another option letter, a nearby number, or an altered statement."""
    ref = reference.strip()
    if re.fullmatch(r"[A-Ja-j]", ref):
        options = [c for c in "ABCD" if c != ref.upper()]
        return rng.choice(options)
    if re.fullmatch(r"-?\d+(\.\d+)?", ref):
        delta = rng.choice([1, 2, 3, 5, 10])
        value = float(ref) + delta * rng.choice([-1, 1])
        return str(int(value)) if "." not in ref else f"{value:.2f}"
    words = ref.split()
    if len(words) > 3:
        rng.shuffle(words)
        return "I think " + " ".join(words[: max(3, len(words) // 2)]) + "."
    return f"Not {ref}."


# Reasoning effort -> scale of the hidden reasoning (OpenAI's levels; "none"/"minimal" reason little or not at all).
EFFORTS = {"none": 0.0, "minimal": 0.0, "low": 0.35, "medium": 1.0, "high": 2.5, "xhigh": 4.0, "max": 6.0}


def reasoning_tokens(seed: int, effort: str | None) -> int:
    """Hidden reasoning tokens a reasoning model spends on a request: ~400 at medium effort, log-normal."""
    scale = EFFORTS[effort or "medium"]
    if not scale:
        return 0
    rng = random.Random(seed ^ 0x5EA5_0000)
    return max(16, int(rng.lognormvariate(6.0, 0.5) * scale))


def json_from_schema(schema: dict[str, Any], rng: random.Random, depth: int = 0,
                     root: dict[str, Any] | None = None) -> Any:
    """A value that fits a JSON schema (the subset structured outputs use, with local `$ref`s as Pydantic
    writes them: `#/$defs/Name`)."""
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth < 8:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return json_from_schema(target if isinstance(target, dict) else {}, rng, depth + 1, root)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    for combo in ("anyOf", "oneOf"):
        if combo in schema:
            return json_from_schema(schema[combo][0], rng, depth, root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: json_from_schema(v, rng, depth + 1, root) for k, v in props.items()}
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        n = max(schema.get("minItems", 1), 1) if depth < 4 else 0
        return [json_from_schema(items, rng, depth + 1, root) for _ in range(min(n + rng.randint(0, 2), 3))]
    if kind == "string":
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
    if kind == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "number":
        return round(rng.uniform(float(schema.get("minimum", 0)), float(schema.get("maximum", 100))), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def generate(
    config: SimConfig,
    model: ModelConfig,
    *,
    prompt: str,
    seed: int,
    max_tokens: int | None,
    stop: list[str] | None = None,
    json_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
    forced_tool: dict[str, Any] | None = None,
    prefill: str = "",
    break_schema: bool = False,
) -> Generation:
    """One reply. `prompt` is the final user turn (what the workload is keyed by); `seed` identifies the
    whole request; `forced_tool` is {"name", "parameters"} when the client forced a tool call.

    `prefill` is the start of the assistant turn the request ends with (`seed` is then the request's without
    it): when it begins the reply the request would get without it, the model goes on from there, as a model
    continuing its own cut-off answer does. `break_schema` makes a schema answer (JSON or tool arguments)
    violate its schema (the `bad_schema` fault)."""
    if prefill:
        full = generate(config, model, prompt=prompt, seed=seed, max_tokens=None, json_schema=json_schema,
                        json_mode=json_mode, break_schema=break_schema)
        start = prefill.rstrip()
        if start and not full.tool_calls and full.text.startswith(start):
            return _go_on(full, full.text[len(start):], max_tokens if max_tokens is not None
                          else model.max_output_tokens, stop)
    rng = random.Random(seed)
    limit = max_tokens if max_tokens is not None else model.max_output_tokens
    if forced_tool is not None:
        args = json_from_schema(forced_tool.get("parameters") or {"type": "object"}, rng)
        if break_schema:
            args = violate(args, forced_tool.get("parameters") or {"type": "object"})
        call_id = f"call_{seed % 10**12:012d}"
        tokens = count_tokens(forced_tool["name"]) + count_tokens(orjson.dumps(args).decode())
        return Generation(tool_calls=[{"id": call_id, "name": forced_tool["name"], "arguments": args}],
                          finish="tool_calls", output_tokens=min(tokens, limit))

    correct: bool | None = None
    entry = config.workload.get(normalise_prompt(prompt))
    if entry is not None:
        correct = model.capability >= entry["difficulty"]
        text = entry["answer"] if correct else wrong_answer(entry["answer"], rng)
    elif json_schema is not None:
        value = json_from_schema(json_schema, rng)
        text = orjson.dumps(violate(value, json_schema) if break_schema else value).decode()
    elif json_mode:
        text = orjson.dumps({"answer": _sentences(rng, rng.randint(10, 40))}).decode()
    else:
        # Replies of realistic length: most short-to-medium, a long tail.
        target = int(min(rng.lognormvariate(4.6, 0.6), 1200))
        text = _sentences(rng, max(target, 5))

    if (json_schema is not None or json_mode) and count_tokens(text) > limit:
        # Structured output must stay valid JSON: a reply that does not fit is cut off (finish "length").
        text, _ = _truncate(text, limit)
        return Generation(text=text, finish="length", output_tokens=count_tokens(text), correct=correct)

    finish, stop_seq = "stop", None
    for seq in stop or []:
        at = text.find(seq)
        if seq and at >= 0:
            text, finish, stop_seq = text[:at], "stop_sequence", seq
    text, cut = _truncate(text, limit)
    if cut:
        finish, stop_seq = "length", None
    return Generation(text=text, finish=finish, stop_sequence=stop_seq,
                      output_tokens=count_tokens(text), correct=correct)


def _go_on(full: Generation, rest: str, limit: int, stop: list[str] | None) -> Generation:
    """The part of `full` after a prefill, cut by the request's own stop sequences and max_tokens."""
    finish, stop_seq = full.finish, full.stop_sequence
    for seq in stop or []:
        at = rest.find(seq)
        if seq and at >= 0:
            rest, finish, stop_seq = rest[:at], "stop_sequence", seq
    rest, cut = _truncate(rest, limit)
    if cut:
        finish, stop_seq = "length", None
    return Generation(text=rest, finish=finish, stop_sequence=stop_seq, output_tokens=count_tokens(rest),
                      correct=full.correct)


def violate(value: Any, schema: dict[str, Any]) -> Any:
    """`value` made not to fit `schema`, as a model without constrained decoding sometimes answers: a required
    property left out, else the first property of the wrong type, else the wrong type altogether."""
    if isinstance(value, dict):
        required = [k for k in schema.get("required") or [] if k in value]
        if required:
            return {k: v for k, v in value.items() if k != required[0]}
        if value:
            key = next(iter(value))
            return {**value, key: 12345 if isinstance(value[key], str) else "not the right type"}
    return "not the right type" if not isinstance(value, str) else 12345


def json_in_prose(gen: Generation, max_tokens: int) -> Generation:
    """A JSON answer wrapped in prose, as an instruction-following model sometimes gives it."""
    text, cut = _truncate(f"Here is the JSON you asked for:\n\n{gen.text}\n\nLet me know if you need anything else.",
                          max_tokens)
    return Generation(text=text, finish="length" if cut else gen.finish, stop_sequence=gen.stop_sequence,
                      output_tokens=count_tokens(text), correct=gen.correct)


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector from the text's tokens: identical text gives identical vectors and texts
    sharing words are closer than unrelated ones."""
    import numpy as np

    vec = np.zeros(dimensions, dtype=np.float64)
    for word in re.findall(r"\w+", text.lower()) or [text]:
        h = seed_of(word)
        idx = np.random.default_rng(h).integers(0, dimensions, size=8)
        vec[idx] += 1.0
    vec += np.random.default_rng(seed_of(text)).normal(0, 0.05, dimensions)
    vec /= np.linalg.norm(vec) or 1.0
    return vec.tolist()
