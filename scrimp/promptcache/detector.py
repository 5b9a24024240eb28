"""The cache-buster detector: what keeps changing at the front of a feature's prompts and defeats caching.

It compares each request's stable part (system prompt, tool definitions) with the previous one of the same
feature and names the change: a timestamp or date, a request/session id, tools in a changing order, unstable
JSON key order, or other edited text — with how many prompt tokens that change puts out of the cache's reach.

It remembers the last stable part of at most `max_keys` keys (tenant/feature; default 1,000, each holding a
system prompt and tool definitions, so up to tens of KB apiece): beyond that the least recently seen key is
forgotten, and its next request is compared with nothing (no finding) and remembered afresh."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from scrimp.canonical import ChatRequest
from scrimp.tokens import count_tokens

VOLATILE = [
    ("timestamp", re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
                             r"|\b\d{1,2}:\d{2}(?::\d{2})?\s?(?:[AaPp][Mm]|UTC|GMT)?\b|\b1[5-9]\d{8}(?:\d{3})?\b")),
    ("request id", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
                              r"|\b(?:req|request|session|trace|run|msg)[_-]?[A-Za-z0-9]{6,}\b|\b[0-9a-f]{16,}\b",
                              re.IGNORECASE)),
]


@dataclass
class Finding:
    kind: str  # timestamp | request id | tools reordered | unstable JSON key order | system prompt edited
    where: str  # system | tools
    example: str  # the changing text, shortened
    tokens_lost: int  # prompt tokens after the change that can no longer be read from cache

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "example": self.example, "tokens_lost": self.tokens_lost}


def _classify(segment: str) -> str:
    for kind, pattern in VOLATILE:
        if pattern.search(segment):
            return kind
    return "system prompt edited"


def _changed_segment(old: str, new: str) -> tuple[int, str]:
    """Where `new` first differs from `old`, and the differing stretch of `new` (widened to whole words)."""
    p = 0
    limit = min(len(old), len(new))
    while p < limit and old[p] == new[p]:
        p += 1
    s = 0
    while s < limit - p and old[-1 - s] == new[-1 - s]:
        s += 1
    start = p
    while start > 0 and not new[start - 1].isspace():
        start -= 1
    end = len(new) - s
    while end < len(new) and not new[end].isspace():
        end += 1
    return p, new[start:end]


MAX_KEYS = 1_000


class CacheBusterDetector:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        self._last: OrderedDict[str, tuple[str, list[str], list[str]]] = OrderedDict()  # LRU order

    def __len__(self) -> int:
        """How many keys are remembered (never more than `max_keys`)."""
        return len(self._last)

    def observe(self, feature: str, req: ChatRequest) -> Finding | None:
        system = req.system_text()
        names = [t.get("name", "") for t in req.tools]
        raw_tools = [orjson.dumps({k: v for k, v in t.items() if k != "cache_control"}).decode() for t in req.tools]
        previous = self._last.pop(feature, None)
        self._last[feature] = (system, names, raw_tools)  # now the most recent
        if len(self._last) > self.max_keys:
            self._last.popitem(last=False)  # the least recently seen key
        if previous is None:
            return None
        old_system, old_names, old_tools = previous
        rest = sum(count_tokens(b.get("text", "")) for m in req.messages for b in m["content"])
        tool_tokens = sum(count_tokens(t) for t in raw_tools)
        if raw_tools != old_tools:
            if sorted(names) == sorted(old_names) and names != old_names:
                return Finding("tools reordered", "tools", ", ".join(names)[:120],
                               tool_tokens + count_tokens(system) + rest)
            if names == old_names and [_sorted_json(t) for t in raw_tools] == [_sorted_json(t) for t in old_tools]:
                return Finding("unstable JSON key order", "tools", names[0] if names else "",
                               tool_tokens + count_tokens(system) + rest)
        if system != old_system and old_system:
            at, segment = _changed_segment(old_system, system)
            return Finding(_classify(segment), "system", segment[:120], count_tokens(system[at:]) + rest)
        return None


def _sorted_json(raw: str) -> bytes:
    return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)


def split_volatile(text: str) -> tuple[str, str]:
    """Move lines with timestamps or ids out of a system prompt: (stable part, volatile lines)."""
    stable, volatile = [], []
    for line in text.split("\n"):
        (volatile if any(p.search(line) for _, p in VOLATILE) else stable).append(line)
    return "\n".join(stable), "\n".join(volatile)
