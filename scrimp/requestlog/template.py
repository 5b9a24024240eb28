"""A prompt's template: the text with what varies between calls of one kind (numbers, ids, dates, e-mail
addresses, quoted values, URLs) replaced by placeholders, so "Summarise ticket 4411" and "Summarise ticket 97"
count as one prompt. Shared by `scrimp audit` (top prompts, volatile prefixes, repeated answers) and the
dashboard's top prompts, so both group the request log's prompts alike."""

from __future__ import annotations

import re

_RULES = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"), "<time>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\[REDACTED:\w+\]|[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"\b(?=[0-9a-z_-]*\d)[0-9a-z_-]{12,}\b", re.IGNORECASE), "<id>"),  # long tokens with digits: ids, hashes
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
    (re.compile(r"\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'"), "<quoted>"),
]


def template(text: str, max_chars: int = 240) -> str:
    out = " ".join(text.split())
    for rx, placeholder in _RULES:
        out = rx.sub(placeholder, out)
    return out[:max_chars]


def normalise(text: str) -> str:
    """What two prompts share when they are the same question (case, spacing and trailing punctuation aside)."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


def volatile_parts(texts: list[str]) -> list[str]:
    """The placeholders that differ across texts sharing one template (what makes a prefix volatile)."""
    found = []
    texts = [" ".join(t.split()) for t in texts]
    for rx, placeholder in _RULES[:-1]:
        if len({tuple(rx.findall(t)) for t in texts}) > 1:
            found.append(placeholder)
        texts = [rx.sub(placeholder, t) for t in texts]  # a date's digits are not also counted as numbers
    return found
