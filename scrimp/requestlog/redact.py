"""Redaction of stored bodies: regexes over every string, and JSON paths whose whole value is replaced.

Defaults catch API keys (OpenAI / Anthropic / scrimp `sk-…`, AWS, Google, GitHub, Slack, bearer tokens,
`api_key=…` style assignments) and e-mail addresses. Redaction runs on the log's writer thread, never on
the request's path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# (label, pattern, group to replace: 0 = the whole match)
DEFAULT_RULES: list[tuple[str, str, int]] = [
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", 0),
    ("api_key", r"\bsk-[A-Za-z0-9_-]{16,}", 0),
    ("api_key", r"\bAKIA[0-9A-Z]{16}\b", 0),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0),
    ("api_key", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", 0),
    ("api_key", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", 0),
    ("api_key", r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)", 1),
    ("api_key", r"(?i)\b(?:api[_-]?key|secret|access[_-]?token|password)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})", 1),
]

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
        rules = [(label, re.compile(p), g) for label, p, g in DEFAULT_RULES] if self.defaults else []
        rules += [("custom", re.compile(p), 0) for p in self.patterns]
        self._rules = rules
        self._paths = [parse_path(p) for p in self.json_paths]

    def text(self, value: str) -> str:
        for label, rx, group in self._rules:
            marker = self.replacement if label == "custom" else f"[REDACTED:{label}]"
            if group == 0:
                value = rx.sub(marker, value)
            else:
                value = rx.sub(lambda m, g=group, k=marker: m.group(0)[:m.start(g) - m.start(0)] + k
                               + m.group(0)[m.end(g) - m.start(0):], value)
        return value

    def body(self, data: Any) -> Any:
        """A copy of a JSON-like value with the paths replaced and every string passed through the regexes."""
        data = _copy(data)
        for steps in self._paths:
            data = _replace_path(data, steps, self.replacement)
        return self._walk(data)

    def _walk(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, list):
            return [self._walk(v) for v in data]
        if isinstance(data, dict):
            return {k: self._walk(v) for k, v in data.items()}
        return data


def _copy(data: Any) -> Any:
    if isinstance(data, list):
        return [_copy(v) for v in data]
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    return data


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
