"""The request as trimmed, for given levels: the one function the gateway stage and the offline evaluation share.

Two kinds of change:
- deterministic ones, the same on every turn (retrieved chunks pruned against their own message's question,
  tool output shrunk): applied to every message, so a re-sent conversation is changed identically each time;
- levels, which move in steps and only forward: the summarised prefix (`checkpoint`, in messages) and how many of
  the oldest tool outputs are masked (`masked`). The stage decides the levels with the prompt cache in mind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scrimp.canonical import ChatRequest
from scrimp.tokens import block_text, tool_text
from scrimp.trim import chunks as chunk_ops
from scrimp.trim.counting import count_tokens
from scrimp.trim.history import HistoryPlan, apply_history, final_turn, message_tokens, plan_history
from scrimp.trim.options import TrimPolicy
from scrimp.trim.relevance import Relevance, VectorCache
from scrimp.trim.tool_output import shrink_text

PARTS = ("chunks", "tool_output", "mask", "history")
MASK_STUB = "[output of {name} left out to save tokens: {tokens} tokens, from an earlier step]"


@dataclass(frozen=True)
class Levels:
    checkpoint: int = 0
    masked: int = 0


@dataclass
class Prepared:
    """The request after the deterministic changes, and what the levels could be."""

    messages: list[dict[str, Any]]
    fixed_tokens: int  # system and tools
    removed: dict[str, int]
    tool_results: list[tuple[int, int]]  # (message, block) of each tool result, oldest first
    wanted: Levels
    chunk_report: list[dict[str, Any]] = field(default_factory=list)  # per message with chunks: kept indices


@dataclass
class Trimmed:
    messages: list[dict[str, Any]]
    levels: Levels
    removed: dict[str, int]
    tokens: int  # the prompt as sent
    message_tokens: list[int]
    plan: HistoryPlan


def _tool_result_text(block: dict[str, Any]) -> str | None:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "\n".join(b.get("text", "") for b in content)
    return None  # images or documents inside: left alone


class Trimmer:
    def __init__(self, policy: TrimPolicy, vectors: VectorCache | None) -> None:
        self.policy = policy
        self.chunk_relevance = Relevance(vectors, policy.chunks.bm25_weight, policy.chunks.embed_chars)
        self.history_relevance = Relevance(vectors, policy.history.bm25_weight)

    # -- deterministic changes ------------------------------------------------------------------------------
    def prepare(self, req: ChatRequest) -> Prepared:
        removed = dict.fromkeys(PARTS, 0)
        messages = req.messages
        report: list[dict[str, Any]] = []
        if self.policy.chunks.enabled:
            messages = self._prune_chunks(messages, removed, report)
        if self.policy.tool_output.enabled:
            messages = self._shrink_tools(messages, removed)
        tool_results = [(i, j) for i, m in enumerate(messages) for j, b in enumerate(m["content"])
                        if b.get("type") == "tool_result"]
        fixed = sum(count_tokens(block_text(b)) for b in req.system) + sum(count_tokens(tool_text(t))
                                                                           for t in req.tools)
        prepared = Prepared(messages, fixed, removed, tool_results, Levels(), report)
        prepared.wanted = Levels(self._wanted_checkpoint(messages), self._wanted_masked(len(tool_results)))
        return prepared

    def _prune_chunks(self, messages: list[dict[str, Any]], removed: dict[str, int],
                      report: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chunks pruned in every user message, each against the question of its own turn (the message's text, or
        the last user text before it), so a re-sent conversation is pruned the same way on every turn."""
        p = self.policy.chunks
        policy = chunk_ops.ChunkPolicy(p.top_k, p.budget_tokens, p.keep_ratio, p.min_chunks, p.keep_at_least,
                                       p.second_hop, p.link_boost)
        out = messages
        turn_question = ""
        for i, msg in enumerate(messages):
            if msg["role"] != "user":
                continue
            new_content = list(msg["content"])
            changed = False
            # tool results first (their positions do not move), then the message's own blocks
            places: list[int | None] = [j for j, b in enumerate(msg["content"])
                                        if b.get("type") == "tool_result" and isinstance(b.get("content"), list)]
            for j in [*places, None]:
                content = new_content if j is None else new_content[j]["content"]
                found, question = chunk_ops.find_chunks(content)
                if j is None and question.strip():
                    turn_question = question
                if len(found) < p.min_chunks:
                    continue
                scores = chunk_ops.rank(found, question or turn_question, self.chunk_relevance, p.second_hop,
                                        p.link_boost)
                kept = chunk_ops.select(found, scores, policy)
                report.append({"message": i, "kept": sorted(kept), "chunks": len(found)})
                if len(kept) == len(found):
                    continue
                removed["chunks"] += sum(c.tokens for n, c in enumerate(found) if n not in kept)
                pruned = chunk_ops.rebuild(content, found, kept)
                if j is None:
                    new_content = pruned
                else:
                    new_content[j] = {**new_content[j], "content": pruned}
                changed = True
            if changed:
                out = out if out is not messages else list(messages)
                out[i] = {**msg, "content": new_content}
        return out

    def _shrink_tools(self, messages: list[dict[str, Any]], removed: dict[str, int]) -> list[dict[str, Any]]:
        p = self.policy.tool_output
        out = messages
        for i, msg in enumerate(messages):
            content = None
            for j, block in enumerate(msg["content"]):
                if block.get("type") != "tool_result":
                    continue
                text = _tool_result_text(block)
                if text is None:
                    continue
                before = count_tokens(text)
                if before < p.min_tokens:
                    continue
                shrunk, how = shrink_text(text, html=p.html, json=p.json, logs=p.logs, max_items=p.max_array_items,
                                          max_string=p.max_string_chars)
                if how is None:
                    continue
                removed["tool_output"] += before - count_tokens(shrunk)
                content = content if content is not None else list(msg["content"])
                content[j] = {**block, "content": shrunk}
            if content is not None:
                out = out if out is not messages else list(messages)
                out[i] = {**msg, "content": content}
        return out

    # -- levels ------------------------------------------------------------------------------------------------
    def _wanted_checkpoint(self, messages: list[dict[str, Any]]) -> int:
        h = self.policy.history
        if not h.enabled:
            return 0
        return plan_history(messages, h, self.history_relevance, checkpoint=None, summary=None,
                            excerpts=False).checkpoint

    def _wanted_masked(self, n: int) -> int:
        p = self.policy.tool_output
        if not (p.enabled and p.mask) or n <= p.keep_last:
            return 0
        return (n - p.keep_last) // p.mask_every * p.mask_every

    def build(self, prepared: Prepared, levels: Levels, summary: str | None, excerpts: bool = True) -> Trimmed:
        """The messages as sent at these levels (`summary`: the prefix's summary; None counts it at its cap)."""
        removed = dict(prepared.removed)
        messages = prepared.messages
        if levels.masked:
            messages = self._mask(messages, prepared.tool_results[: levels.masked], removed)
        h = self.policy.history
        plan = HistoryPlan(final=final_turn(messages))
        if h.enabled and levels.checkpoint:
            plan = plan_history(messages, h, self.history_relevance, checkpoint=levels.checkpoint, summary=summary,
                                excerpts=excerpts)
        before = sum(message_tokens(m) for m in messages)
        messages = apply_history(messages, plan, summary, h)
        per_message = [message_tokens(m) for m in messages]
        removed["history"] = before - sum(per_message)
        return Trimmed(messages, Levels(plan.checkpoint, levels.masked), removed,
                       prepared.fixed_tokens + sum(per_message), per_message, plan)

    def _mask(self, messages: list[dict[str, Any]], which: list[tuple[int, int]],
              removed: dict[str, int]) -> list[dict[str, Any]]:
        p = self.policy.tool_output
        names = {b.get("id"): b.get("name", "a tool") for m in messages for b in m["content"]
                 if b.get("type") == "tool_use"}
        out = list(messages)
        for i, j in which:
            block = out[i]["content"][j]
            tokens = count_tokens(block_text(block))
            if tokens < p.mask_min_tokens:
                continue
            stub = MASK_STUB.format(name=names.get(block.get("tool_use_id"), "a tool"), tokens=tokens)
            content = list(out[i]["content"])
            content[j] = {**block, "content": stub}
            out[i] = {**out[i], "content": content}
            removed["mask"] += tokens - count_tokens(stub)
        return out
