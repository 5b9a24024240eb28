"""OpenAI's automatic prompt caching: a repeated prefix of >= 1024 tokens is served from cache in
128-token steps, per model and prompt_cache_key, and forgotten after an idle time."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

MIN_TOKENS = 1024
STEP = 128


class OpenAIPromptCache:
    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._entries: dict[tuple[str, str, bytes], float] = {}  # (model, key, prefix hash) -> last use

    def lookup_and_store(self, model: str, cache_key: str | None, tokens: list[str]) -> int:
        """Return how many of `tokens` are read from cache, and cache this prompt's prefixes."""
        if len(tokens) < MIN_TOKENS:
            return 0
        now = self.clock()
        key = cache_key or ""
        h = hashlib.blake2b(digest_size=16)
        cached = 0
        hitting = True
        pos = 0
        for boundary in range(MIN_TOKENS, len(tokens) + 1, STEP):
            h.update("\x1f".join(tokens[pos:boundary]).encode())
            pos = boundary
            entry = (model, key, h.copy().digest())
            last = self._entries.get(entry)
            # The hash is cumulative, so a hit at a boundary means the whole prefix up to it matches.
            if hitting and last is not None and now - last <= self.idle_s:
                cached = boundary
            else:
                hitting = False
            self._entries[entry] = now
        return cached

    def reset(self) -> None:
        self._entries.clear()
