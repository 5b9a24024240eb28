"""Redaction of stored bodies: regexes over every string, and JSON paths whose whole value is replaced.

Defaults catch API keys (OpenAI / Anthropic / scrimp `sk-…`, AWS, Google, GitHub, Slack, bearer tokens,
`api_key=…` style assignments) and e-mail addresses. Redaction runs on the log's writer thread, never on
the request's path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# (label, pattern, hints): a pattern with a group named `v` has only that part replaced (the name of an
# assignment stays). A pattern runs only on strings holding one of its hints (looked for in the lower-cased
# string): most strings hold none, and a regex pass per string per rule is what redaction would cost otherwise.
DEFAULT_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", ("@",)),
    ("api_key", r"\bsk-[A-Za-z0-9_-]{16,}", ("sk-",)),
    ("api_key", r"\bAKIA[0-9A-Z]{16}\b", ("akia",)),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",)),
    ("api_key", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("api_key", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", ("xox",)),
    ("api_key", r"\b(?i:bearer)\s+(?P<v>[A-Za-z0-9._~+/-]{16,}=*)", ("bearer",)),
    ("api_key", r"\b(?i:api[_-]?key|secret|access[_-]?token|password)\b[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;]{8,})",
     ("key", "secret", "token", "password")),
]
MIN_SECRET_CHARS = 6  # shorter strings ("text", "user", "end_turn") hold no address or key: not scanned

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """`messages[*].content[0].text`, `metadata.email`, `$.system` -> steps ("*" is every item or key)."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        m = _PATH_PART.match(text, pos)
        if m is None:
            raise ValueError(f"bad JSON path {path!r} at {text[pos:]!r}")
        name, index = m.groups()
        steps.append(name if name is not None else ("*" if index == "*" else int(index)))
        pos = m.end()
    if not steps:
        raise ValueError(f"empty JSON path {path!r}")
    return steps


@dataclass
class Redactor:
    patterns: list[str] = field(default_factory=list)
    json_paths: list[str] = field(default_factory=list)
    defaults: bool = True
    replacement: str = "[REDACTED]"

    def __post_init__(self) -> None:
        rules = DEFAULT_RULES if self.defaults else []
        self._rules = [(f"[REDACTED:{label}]", re.compile(pattern), hints) for label, pattern, hints in rules]
        self._custom = [re.compile(p) for p in self.patterns]
        self._paths = [parse_path(p) for p in self.json_paths]

    def text(self, value: str) -> str:
        if len(value) < MIN_SECRET_CHARS:
            return value
        low = value.lower()
        for marker, rx, hints in self._rules:
            if not any(h in low for h in hints):
                continue
            if "v" in rx.groupindex:
                value = rx.sub(lambda m, k=marker: m.group()[:m.start("v") - m.start()] + k
                               + m.group()[m.end("v") - m.start():], value)
            else:
                value = rx.sub(marker, value)
            low = value.lower()
        for rx in self._custom:
            value = rx.sub(self.replacement, value)
        return value

    def body(self, data: Any) -> Any:
        """A redacted copy of a JSON-like value: every string through the regexes, then the paths replaced
        (on the copy; the input is never changed)."""
        out = self._walk(data)
        for steps in self._paths:
            out = _replace_path(out, steps, self.replacement)
        return out

    def _walk(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, list):
            return [self._walk(v) for v in data]
        if isinstance(data, dict):
            return {k: v if k in _FIXED else self._walk(v) for k, v in data.items()}
        return data


# Canonical fields whose values are names from a fixed set, never text a caller wrote: not scanned.
_FIXED = frozenset({"type", "role", "model", "inbound", "stop_reason", "tool_choice"})
def _replace_path(node: Any, steps: list[str | int], marker: str) -> Any:
    if not steps:
        return marker if node is not None else None
    step, rest = steps[0], steps[1:]
    if step == "*":
        if isinstance(node, list):
            return [_replace_path(v, rest, marker) for v in node]
        if isinstance(node, dict):
            return {k: _replace_path(v, rest, marker) for k, v in node.items()}
        return node
    if isinstance(step, int):
        if isinstance(node, list) and -len(node) <= step < len(node):
            node[step] = _replace_path(node[step], rest, marker)
        return node
    if isinstance(node, dict) and step in node:
        node[step] = _replace_path(node[step], rest, marker)
    return node
