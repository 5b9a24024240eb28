"""Token counts of texts the trim stage sees again and again (a conversation's turns, a corpus's chunks): the
project's counter, remembered per text, since it is the largest part of a trim's time."""

from __future__ import annotations

from functools import lru_cache

from scrimp.tokens import count_tokens as _count


@lru_cache(maxsize=65_536)
def count_tokens(text: str) -> int:
    return _count(text)
