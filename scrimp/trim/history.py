"""Which turns of a long conversation are sent: a summary of the prefix, the recent turns verbatim, and earlier
turns the final user turn needs, quoted verbatim just before it.

The layout keeps the prefix stable: messages[:S] (S a checkpoint) are replaced by a summary made once for that
exact prefix; everything from S on is sent as the client sent it; the quoted excerpts, which depend on the
question, go into the final user message, which is new on every turn anyway. Checkpoints are fixed positions
(the first turn start at or after each multiple of `checkpoint_every` messages), so S moves in steps and the
prefix only grows between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scrimp.tokens import MESSAGE_OVERHEAD, block_text
from scrimp.trim.counting import count_tokens
from scrimp.trim.options import HistoryPolicy
from scrimp.trim.relevance import Relevance

SUMMARY_HEAD = "[Summary of the first {n} messages of this conversation, which are left out]\n"
NOTE = "[The first {n} messages of this conversation are left out]"
EXCERPTS_HEAD = "[Earlier messages of this conversation that bear on this question, quoted verbatim]\n"


def message_text(msg: dict[str, Any]) -> str:
    return "\n".join(b.get("text", "") for b in msg["content"] if b.get("type") == "text")


def message_tokens(msg: dict[str, Any]) -> int:
    return MESSAGE_OVERHEAD + sum(count_tokens(block_text(b)) for b in msg["content"])


def is_turn_start(msg: dict[str, Any]) -> bool:
    """A user message that answers no tool call: the conversation may be cut just before it."""
    return msg["role"] == "user" and not any(b.get("type") == "tool_result" for b in msg["content"])


def final_turn(messages: list[dict[str, Any]]) -> int:
    """Index of the final user turn (the last user message with text), or -1."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user" and message_text(messages[i]).strip():
            return i
    return -1


def checkpoints(messages: list[dict[str, Any]], upto: int, every: int) -> list[int]:
    """The positions the summarised prefix may end at, before `upto`."""
    out: list[int] = []
    target = every
    for i in range(1, upto):
        if i >= target and is_turn_start(messages[i]):
            out.append(i)
            target = (i // every + 1) * every
    return out


@dataclass
class HistoryPlan:
    checkpoint: int = 0  # messages[:checkpoint] are summarised (0: nothing trimmed)
    excerpts: list[int] = field(default_factory=list)  # earlier messages quoted verbatim, in order
    history_tokens: int = 0
    final: int = -1


def triggered(messages: list[dict[str, Any]], final: int, policy: HistoryPolicy, tokens: list[int]) -> bool:
    if final <= 0:
        return False
    over_tokens = sum(tokens[:final]) > policy.trigger_tokens
    over_turns = policy.trigger_turns is not None and final > policy.trigger_turns
    return over_tokens or over_turns


def wanted_checkpoint(messages: list[dict[str, Any]], final: int, policy: HistoryPolicy) -> int:
    marks = [c for c in checkpoints(messages, final, policy.checkpoint_every) if final - c >= policy.keep_recent]
    return marks[-1] if marks else 0


def summary_tokens(policy: HistoryPolicy, summary: str | None, n: int) -> int:
    """Tokens the summary block costs; before it exists, its cap (what the offline evaluation counts)."""
    if not policy.summary:
        return count_tokens(NOTE.format(n=n))
    body = summary if summary is not None else " ".join(["x"] * policy.summary_max_tokens)
    return count_tokens(SUMMARY_HEAD.format(n=n)) + count_tokens(body)


def choose_excerpts(messages: list[dict[str, Any]], checkpoint: int, final: int, query: str,
                    policy: HistoryPolicy, relevance: Relevance, tokens: list[int], budget: float) -> list[int]:
    """Earlier messages (before the checkpoint) most relevant to the query, best first while they fit."""
    candidates = [i for i in range(checkpoint) if message_text(messages[i]).strip()]
    if not candidates or budget <= 0 or not query.strip():
        return []
    texts = [message_text(messages[i]) for i in candidates]
    scores = relevance.scores(query, texts)
    if policy.neighbour_weight > 0 and len(scores) > 2:
        # a turn near a relevant one is often part of the same exchange (its question, its answer): it scores a
        # share of its neighbour's score, 0.75x less per further step
        reach = max(1, policy.neighbour_reach)
        padded = np.pad(scores, reach)
        n = len(scores)
        near = scores
        for d in range(1, reach + 1):
            share = policy.neighbour_weight * 0.75 ** (d - 1)
            side = np.maximum(padded[reach - d : reach - d + n], padded[reach + d : reach + d + n])
            near = np.maximum(near, share * side)
        scores = near
    chosen: list[int] = []
    used = 0.0
    for k in np.argsort(-scores, kind="stable"):
        i = candidates[int(k)]
        cost = tokens[i] + 2
        if used + cost <= budget:
            chosen.append(i)
            used += cost
    return sorted(chosen)


def plan_history(messages: list[dict[str, Any]], policy: HistoryPolicy, relevance: Relevance,
                 checkpoint: int | None = None, summary: str | None = None, excerpts: bool = True) -> HistoryPlan:
    """What to send for this conversation, with the summarised prefix ending at `checkpoint` (None: where the
    policy wants it now); `excerpts=False` only places the checkpoint."""
    final = final_turn(messages)
    tokens = [message_tokens(m) for m in messages]
    plan = HistoryPlan(final=final, history_tokens=sum(tokens[:max(final, 0)]))
    if not policy.enabled or not triggered(messages, final, policy, tokens):
        return plan
    cut = wanted_checkpoint(messages, final, policy) if checkpoint is None else checkpoint
    if cut <= 0:
        return plan
    budget = max(policy.keep_ratio * plan.history_tokens, policy.min_keep_tokens)
    kept = summary_tokens(policy, summary, cut) + sum(tokens[cut:final])
    if kept >= plan.history_tokens:
        return plan
    plan.checkpoint = cut
    if not excerpts:
        return plan
    room = budget - kept - count_tokens(EXCERPTS_HEAD)
    plan.excerpts = choose_excerpts(messages, cut, final, message_text(messages[final]), policy, relevance,
                                    tokens, room)
    return plan


def apply_history(messages: list[dict[str, Any]], plan: HistoryPlan, summary: str | None,
                  policy: HistoryPolicy) -> list[dict[str, Any]]:
    """The messages as sent: summary (or note) at the head of messages[S], excerpts in the final user turn."""
    if plan.checkpoint <= 0:
        return messages
    n = plan.checkpoint
    head = (SUMMARY_HEAD.format(n=n) + (summary or "")) if policy.summary else NOTE.format(n=n)
    out = [{**m, "content": list(m["content"])} for m in messages[n:]]
    out[0]["content"].insert(0, {"type": "text", "text": head})
    if plan.excerpts:
        quoted = "\n".join(f"{messages[i]['role']}: {message_text(messages[i])}" for i in plan.excerpts)
        final = out[plan.final - n]
        at = sum(1 for b in final["content"] if b.get("type") == "tool_result")  # tool results stay first
        if plan.final == n:
            at += 1  # after the summary
        final["content"].insert(at, {"type": "text", "text": EXCERPTS_HEAD + quoted})
    return out
