"""What the semantic cache compares: the final user turn, normalised so that spacing, Unicode forms and
trailing punctuation do not make two identical questions look different. Case is kept: names matter."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE.sub(" ", text).strip()
    return text.rstrip(" ?!.")  # "Why?" and "Why" ask the same thing
