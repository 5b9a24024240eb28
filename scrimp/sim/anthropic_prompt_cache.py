"""Anthropic prompt caching as documented: explicit `cache_control` breakpoints over the prefix
tools → system → messages, at most 4, a per-model minimum length, a 20-block lookback, 5m / 1h TTLs
refreshed on read."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from scrimp.sim.errors import invalid

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTLS = {"5m": 300.0, "1h": 3600.0}


@dataclass
class Block:
    """One cacheable unit of the prompt (a tool, a system block, a message content block)."""

    key: bytes  # canonical serialisation (what must match for a hit)
    tokens: int
    ttl: str | None  # the breakpoint's TTL when this block carries cache_control


@dataclass
class CacheUsage:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0


class AnthropicPromptCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[tuple[str, bytes], tuple[float, float]] = {}  # -> (expires_at, ttl seconds)

    def reset(self) -> None:
        self._entries.clear()

    def account(self, model: str, blocks: list[Block], min_tokens: int) -> CacheUsage:
        breakpoints = [i for i, b in enumerate(blocks) if b.ttl is not None]
        if len(breakpoints) > MAX_BREAKPOINTS:
            raise invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                          f"Found {len(breakpoints)}.")
        seen_5m = False
        for i in breakpoints:
            if blocks[i].ttl not in TTLS:
                raise invalid(f"cache_control.ttl: must be '5m' or '1h', got {blocks[i].ttl!r}")
            if blocks[i].ttl == "5m":
                seen_5m = True
            elif seen_5m:
                raise invalid("cache_control: a 1h cache entry must not come after a 5m one "
                              "(longer TTLs must appear first).")
        if not breakpoints:
            return CacheUsage()

        now = self.clock()
        hashes: list[bytes] = []
        cum: list[int] = []
        h = hashlib.blake2b(digest_size=16)
        total = 0
        for block in blocks:
            h.update(block.key)
            hashes.append(h.copy().digest())
            total += block.tokens
            cum.append(total)

        # Read: the longest cached prefix ending at a breakpoint or up to 20 blocks before one.
        read_at = -1
        for bp in breakpoints:
            for j in range(bp, max(-1, bp - LOOKBACK_BLOCKS - 1), -1):
                entry = self._entries.get((model, hashes[j]))
                if entry is not None and entry[0] > now:
                    read_at = max(read_at, j)
                    break
        usage = CacheUsage(read=cum[read_at] if read_at >= 0 else 0)
        if read_at >= 0:
            ttl_s = self._entries[(model, hashes[read_at])][1]
            self._entries[(model, hashes[read_at])] = (now + ttl_s, ttl_s)  # refreshed on read

        # Write: each breakpoint past the read point whose prefix reaches the model's minimum length.
        pos = read_at
        for bp in breakpoints:
            if bp <= pos or cum[bp] < min_tokens:
                continue
            written = cum[bp] - (cum[pos] if pos >= 0 else 0)
            ttl = blocks[bp].ttl or "5m"
            if ttl == "1h":
                usage.write_1h += written
            else:
                usage.write_5m += written
            self._entries[(model, hashes[bp])] = (now + TTLS[ttl], TTLS[ttl])
            pos = bp
        return usage
