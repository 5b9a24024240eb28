"""Offline evaluation on public data, deciding exactly as the gateway would (the same Trimmer, the same policy).

- rag (hotpotqa format: {"question", "chunks": [{"title", "text"}], "gold": [indices]}): each question becomes a
  request whose user message holds the chunks as Anthropic `document` blocks followed by the question; reports
  the share of chunk tokens removed and the share of gold chunks kept.
- history (locomo format: {"speakers", "turns": [{"id", "speaker", "text", "image_caption"?}], "questions":
  [{"question", "evidence"}]}): each question becomes the last user turn of the whole conversation (speaker A as
  user, B as assistant; a shared photo as its caption); reports the share of history tokens removed (the summary
  counted at its cap: no model is called offline) and the share of evidence turns kept verbatim (recent turns
  or quoted excerpts; a summary does not count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from scrimp.canonical import ChatRequest
from scrimp.trim.counting import count_tokens
from scrimp.trim.history import message_tokens
from scrimp.trim.options import TrimPolicy
from scrimp.trim.trimmer import Trimmer


@dataclass
class Example:
    id: str
    tokens: int  # chunk or history tokens before
    removed: int
    evidence: int
    kept: int
    seconds: float = 0.0


def _text(block_text: str) -> dict[str, Any]:
    return {"type": "text", "text": block_text}


def rag_request(row: dict[str, Any], model: str = "claude-sonnet-4-6") -> ChatRequest:
    docs = [{"type": "document", "title": c.get("title", ""),
             "source": {"type": "text", "media_type": "text/plain", "data": c["text"]}} for c in row["chunks"]]
    return ChatRequest(model=model, messages=[{"role": "user", "content": [*docs, _text(row["question"])]}],
                       inbound="anthropic")


def rag_examples(rows: list[dict[str, Any]], policy: TrimPolicy, trimmer: Trimmer,
                 tick: Callable[[], None] = lambda: None) -> Iterator[Example]:
    import time

    for row in rows:
        req = rag_request(row)
        t0 = time.perf_counter()
        prepared = trimmer.prepare(req)
        seconds = time.perf_counter() - t0
        total = sum(count_tokens(c.get("title", "")) + count_tokens(c["text"]) for c in row["chunks"])
        kept = set(range(len(row["chunks"])))
        for report in prepared.chunk_report:
            kept = set(report["kept"])
        gold = [g for g in row.get("gold", []) if 0 <= g < len(row["chunks"])]
        tick()
        yield Example(str(row.get("id", "")), total, prepared.removed["chunks"], len(gold),
                      sum(1 for g in gold if g in kept), seconds)


def turn_text(turn: dict[str, Any]) -> str:
    text = turn.get("text", "")
    if turn.get("image_caption"):
        text += f" [shares a photo: {turn['image_caption']}]"
    return text


def history_messages(conv: dict[str, Any]) -> list[dict[str, Any]]:
    user = conv["speakers"][0]
    return [{"role": "user" if t["speaker"] == user else "assistant", "content": [_text(turn_text(t))]}
            for t in conv["turns"]]


def history_examples(convs: list[dict[str, Any]], policy: TrimPolicy, trimmer: Trimmer,
                     tick: Callable[[], None] = lambda: None) -> Iterator[Example]:
    import time

    cap = policy.history.summary_max_tokens
    for conv in convs:
        history = history_messages(conv)
        ids = {t["id"]: i for i, t in enumerate(conv["turns"])}
        before = sum(message_tokens(m) for m in history)
        for n, q in enumerate(conv["questions"]):
            final = {"role": "user", "content": [_text(q["question"])]}
            req = ChatRequest(model="claude-sonnet-4-6", messages=[*history, final], inbound="anthropic")
            t0 = time.perf_counter()
            prepared = trimmer.prepare(req)
            # no model is called offline: the summary is a stand-in as long as its cap
            trimmed = trimmer.build(prepared, prepared.wanted, summary=" ".join(["x"] * cap))
            seconds = time.perf_counter() - t0
            plan = trimmed.plan
            verbatim = set(plan.excerpts) | set(range(plan.checkpoint, len(history)))
            after = sum(trimmed.message_tokens) - message_tokens(final)
            evidence = [ids[e] for e in q.get("evidence", []) if e in ids]
            tick()
            yield Example(f"{conv.get('id', '')}#{n}", before, before - after, len(evidence),
                          sum(1 for e in evidence if e in verbatim), seconds)


def summarise(examples: list[Example]) -> dict[str, Any]:
    tokens = sum(e.tokens for e in examples)
    evidence = sum(e.evidence for e in examples)
    times = sorted(e.seconds for e in examples)

    def q(p: float) -> float:
        return round(times[min(len(times) - 1, int(p * len(times)))] * 1000, 3) if times else 0.0

    return {"examples": len(examples),
            "token_reduction": round(sum(e.removed for e in examples) / tokens, 4) if tokens else 0.0,
            "evidence_recall": round(sum(e.kept for e in examples) / evidence, 4) if evidence else 1.0,
            "evidence": evidence, "tokens_before": tokens, "tokens_removed": sum(e.removed for e in examples),
            "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99)}
