"""How good a cheap model's answer is, with the strong model's answer as the reference (0..1).

Used by shadow evaluation: both models answer the same request; the route's scorer says how much of the
strong answer's quality the cheap one kept. `judge` asks a configured judge model instead."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:[eE]-?\d+)?")
_CHOICE = re.compile(r"(?:answer(?: is)?[:\s]*\(?|^\(?|\s\(?)([A-J])(?:\)|\.|:|\s|$)", re.IGNORECASE | re.MULTILINE)


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!")


def exact(cheap: str, strong: str, **_: Any) -> float:
    return float(_norm(cheap) == _norm(strong))


def numeric(cheap: str, strong: str, *, rel_tol: float = 1e-6, **_: Any) -> float:
    """The last number each answer states must agree."""
    a, b = _NUMBER.findall(cheap), _NUMBER.findall(strong)
    if not a or not b:
        return float(not a and not b and exact(cheap, strong))
    x, y = float(a[-1].replace(",", "")), float(b[-1].replace(",", ""))
    return float(math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9))


def choice_letter(text: str) -> str | None:
    """The multiple-choice letter an answer commits to ("B", "Answer: (c)", "The answer is D.")."""
    stripped = text.strip()
    if len(stripped) <= 3 and stripped[:1].isalpha() and stripped[:1].upper() in "ABCDEFGHIJ":
        return stripped[0].upper()
    found = _CHOICE.findall(text)
    return found[-1].upper() if found else None


def choice(cheap: str, strong: str, **_: Any) -> float:
    a, b = choice_letter(cheap), choice_letter(strong)
    return float(a is not None and a == b)


def json_fields(cheap: str, strong: str, *, fields: list[str] | None = None, **_: Any) -> float:
    """Share of the strong answer's fields (or the named ones) the cheap answer gives the same value."""
    try:
        a, b = orjson.loads(cheap), orjson.loads(strong)
    except orjson.JSONDecodeError:
        return 0.0
    if not isinstance(a, dict) or not isinstance(b, dict):
        return float(a == b)
    keys = fields or list(b)
    if not keys:
        return float(a == b)
    return sum(a.get(k) == b.get(k) for k in keys) / len(keys)


def embedding(cheap: str, strong: str, *, embed: Callable[[list[str]], Any] | None = None, floor: float = 0.5,
              **_: Any) -> float:
    """Cosine of the two answers, rescaled so that `floor` and below count as 0."""
    if embed is None:
        from scrimp.cache.semantic.model import load_model

        embed = load_model().embedder.embed
    u, v = embed([cheap, strong])
    cos = float((u * v).sum())
    return max(0.0, min(1.0, (cos - floor) / (1 - floor)))


SCORERS: dict[str, Callable[..., float]] = {"exact": exact, "numeric": numeric, "choice": choice,
                                            "json": json_fields, "embedding": embedding}

JUDGE_PROMPT = """You grade a candidate answer against a reference answer to the same request.
Request:
{prompt}

Reference answer:
{strong}

Candidate answer:
{cheap}

Is the candidate as good as the reference for the person who asked? Reply with one number from 0 to 10."""


async def judge(cheap: str, strong: str, *, prompt: str, ask: Callable[[str], Awaitable[str]], **_: Any) -> float:
    """An LLM judge through the gateway's own upstream: `ask(text)` returns the judge model's reply."""
    reply = await ask(JUDGE_PROMPT.format(prompt=prompt[:6000], strong=strong[:4000], cheap=cheap[:4000]))
    found = _NUMBER.findall(reply)
    if not found:
        return 0.0
    return max(0.0, min(1.0, float(found[0].replace(",", "")) / 10))
