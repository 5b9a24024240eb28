"""Anthropic breakpoint placement: where to put `cache_control` so stable prefixes are written once and read
on every later call.

Breakpoints go, in prefix order, on the last tool, the last system block, and the end of the conversation so far
(the whole history is then read on the next turn), plus one intermediate point when a conversation has grown more
than the lookback window (20 blocks) past the previous breakpoint, so the next turn still finds its cached entry.
Only where the cumulative prefix reaches the model's minimum cacheable length; never more than 4 in all, counting
the client's own; a client's breakpoints are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scrimp.canonical import ChatRequest
from scrimp.promptcache.profiles import CacheProfile
from scrimp.tokens import MESSAGE_OVERHEAD, block_text, count_tokens, tool_text


@dataclass
class Slot:
    section: str  # tools | system | messages
    container: list[dict[str, Any]]  # the list holding the block, so it can be replaced by a copy
    index: int
    tokens: int

    @property
    def block(self) -> dict[str, Any]:
        return self.container[self.index]


@dataclass
class Plan:
    added: list[int] = field(default_factory=list)  # slot positions given a breakpoint
    client: int = 0  # breakpoints the client set itself
    prefix_tokens: int = 0  # tokens up to the last breakpoint (what can be read next time)
    stable_tokens: int = 0  # tokens up to the stable (tools/system) breakpoint


def slots_of(req: ChatRequest) -> list[Slot]:
    slots = [Slot("tools", req.tools, i, count_tokens(tool_text(t))) for i, t in enumerate(req.tools)]
    slots += [Slot("system", req.system, i, count_tokens(block_text(b))) for i, b in enumerate(req.system)]
    for msg in req.messages:
        for j, block in enumerate(msg["content"]):
            slots.append(Slot("messages", msg["content"], j,
                              count_tokens(block_text(block)) + (MESSAGE_OVERHEAD if j == 0 else 0)))
    return slots


def _cacheable(block: dict[str, Any]) -> bool:
    if block.get("type") == "text":
        return bool(block.get("text"))
    return block.get("type") in ("tool_use", "tool_result", "image", "document") or "input_schema" in block


def plan(req: ChatRequest, profile: CacheProfile, stable_ttl: str = "5m", volatile_system_blocks: int = 0) -> Plan:
    """Add breakpoints to `req` in place (blocks are copied before they are changed). Returns what was done.

    `volatile_system_blocks`: how many trailing system blocks change on every call (moved there on purpose);
    the stable breakpoint goes before them."""
    slots = slots_of(req)
    result = Plan()
    if not slots:
        return result
    cum: list[int] = []
    total = 0
    for slot in slots:
        total += slot.tokens
        cum.append(total)
    existing = [i for i, s in enumerate(slots) if "cache_control" in s.block]
    result.client = len(existing)
    budget = profile.max_breakpoints - len(existing)
    if budget <= 0:
        return result

    stable_slots = [i for i, s in enumerate(slots) if s.section in ("tools", "system")]
    if volatile_system_blocks:
        stable_slots = stable_slots[:-volatile_system_blocks]
    last_stable = max(stable_slots, default=-1)
    last_tool = max((i for i, s in enumerate(slots) if s.section == "tools"), default=-1)
    tail = len(slots) - 1 if slots[-1].section == "messages" else -1
    wanted: list[tuple[int, str]] = []  # (position, ttl), in priority order
    if last_stable >= 0:
        wanted.append((last_stable, stable_ttl))
    if tail >= 0:
        wanted.append((tail, "5m"))
        anchor = max([p for p in existing if p < tail] + [last_stable])
        if tail - anchor > profile.lookback_blocks:
            wanted.append((tail - profile.lookback_blocks, "5m"))
    if 0 <= last_tool < last_stable:
        wanted.append((last_tool, stable_ttl))  # tools alone, shared by features with other system prompts

    # A 1h entry may not follow a 5m one: the client's 5m breakpoints force ours after them to 5m too.
    first_client_5m = min((p for p in existing if slots[p].block["cache_control"].get("ttl", "5m") == "5m"),
                          default=len(slots))
    chosen: dict[int, str] = {}
    for pos, ttl in wanted:
        if len(chosen) >= budget:
            break
        if pos in chosen or pos in existing or cum[pos] < profile.min_tokens or not _cacheable(slots[pos].block):
            continue
        chosen[pos] = "5m" if pos > first_client_5m else ttl
    # Keep 1h before 5m among ours as well.
    seen_5m = False
    for pos in sorted(chosen):
        if chosen[pos] == "5m":
            seen_5m = True
        elif seen_5m:
            chosen[pos] = "5m"
    for pos, ttl in sorted(chosen.items()):
        slot = slots[pos]
        control: dict[str, Any] = {"type": "ephemeral"}
        if ttl != "5m":
            control["ttl"] = ttl
        slot.container[slot.index] = {**slot.block, "cache_control": control}
    result.added = sorted(chosen)
    marks = result.added + existing
    result.prefix_tokens = cum[max(marks)] if marks else 0
    result.stable_tokens = cum[last_stable] if last_stable >= 0 else 0
    return result
