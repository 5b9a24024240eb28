"""Retrieved chunks in a request, found, re-ranked against the question, and pruned in their original order.

Where chunks are recognised (in user messages, and inside tool results):
- Anthropic `document` blocks with a text source (`source.type` "text", or "content" with text blocks);
- Anthropic `search_result` blocks (their `content` text blocks);
- the text convention: a `<document ...>...</document>` element inside a text block (the shape Anthropic's
  long-context guide recommends; `<source>`, `<title>` and `<document_content>` children are fine). One element
  is one chunk; the text around the elements is the question.

Chunks of other kinds (PDF or image sources) are never dropped. The question a message's chunks are ranked
against is the text of that message outside its chunks, or, when there is none, the final user turn's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from scrimp.trim.counting import count_tokens
from scrimp.trim.relevance import Relevance, words

DOC_ELEMENT = re.compile(r"<document\b[^>]*>.*?</document>\s*", re.DOTALL | re.IGNORECASE)
_PARENS = re.compile(r"\([^)]*\)")
_TITLE = re.compile(r"""\btitle\s*=\s*["']([^"']*)["']|<title>(.*?)</title>""", re.DOTALL | re.IGNORECASE)


@dataclass
class Chunk:
    where: tuple[int, ...]  # (block index,) or (block index, element index) for the text convention
    title: str
    text: str
    tokens: int


def block_chunk_text(block: dict[str, Any]) -> tuple[str, str] | None:
    """(title, text) of a document or search_result block with text content; None for any other block."""
    kind = block.get("type")
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return str(block.get("title") or ""), source["data"]
        if source.get("type") == "content" and isinstance(source.get("content"), list):
            return str(block.get("title") or ""), _texts(source["content"])
        return None
    if kind == "search_result" and isinstance(block.get("content"), list):
        return str(block.get("title") or ""), _texts(block["content"])
    return None


def _texts(blocks: list[Any]) -> str:
    return "\n".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def find_chunks(content: list[dict[str, Any]]) -> tuple[list[Chunk], str]:
    """The chunks in one message's content and the question text around them."""
    chunks: list[Chunk] = []
    question: list[str] = []
    for i, block in enumerate(content):
        found = block_chunk_text(block)
        if found is not None:
            title, text = found
            chunks.append(Chunk((i,), title, text, count_tokens(title) + count_tokens(text)))
        elif block.get("type") == "text":
            text = block.get("text", "")
            elements = DOC_ELEMENT.findall(text) if "<document" in text.lower() else []
            for j, element in enumerate(elements):
                title = _TITLE.search(element)
                name = (title.group(1) or title.group(2) or "") if title else ""
                chunks.append(Chunk((i, j), name.strip(), element, count_tokens(element)))
            rest = DOC_ELEMENT.sub("", text) if elements else text
            if rest.strip():
                question.append(rest.strip())
    return chunks, "\n".join(question)


@dataclass
class ChunkPolicy:
    top_k: int | None = None
    budget_tokens: int | None = None
    keep_ratio: float | None = 0.4  # at most this share of the chunk tokens
    min_chunks: int = 3  # a message with fewer chunks is left alone
    keep_at_least: int = 1
    second_hop: bool = True
    link_boost: float = 0.5


def _phrase(text: str) -> str:
    """A title as a run of content words, without a "(disambiguation)" part: what a mention of it looks like."""
    return " " + " ".join(words(_PARENS.sub("", text))) + " "


def rank(chunks: list[Chunk], question: str, relevance: Relevance, second_hop: bool = True,
         link_boost: float = 0.5) -> list[float]:
    """A relevance score per chunk. With `second_hop`, a chunk also scores for the question together with the best
    chunk (a bridge question needs the passage the first one names), at half weight. With `link_boost`, a titled
    chunk named in the text of one of the two best chunks gains that share of the naming chunk's score (the
    entity link a multi-hop question follows)."""
    docs = [f"{c.title}\n{c.text}" if c.title else c.text for c in chunks]
    first = relevance.scores(question, docs)
    scores = first
    if second_hop and len(chunks) > 2:
        best = int(first.argmax())
        hop = relevance.scores(f"{question}\n{docs[best]}", docs)
        hop[best] = 0.0
        scores = first + 0.5 * hop
    if link_boost and len(chunks) > 2:
        scores = scores.copy()
        top = [int(i) for i in np.argsort(-first, kind="stable")[:2]]
        texts = {b: _phrase(chunks[b].text) for b in top}
        for i, c in enumerate(chunks):
            title = _phrase(c.title) if c.title else ""
            if title.strip():
                for b in top:
                    if b != i and title in texts[b]:
                        scores[i] += link_boost * first[b]
                        break
    return [float(s) for s in scores]


def select(chunks: list[Chunk], scores: list[float], policy: ChunkPolicy) -> set[int]:
    """Indices of the chunks kept: best first while the budget and top-k allow (a chunk too big for what is left
    is passed over for smaller ones), at least `keep_at_least`."""
    total = sum(c.tokens for c in chunks)
    budget = float("inf")
    if policy.budget_tokens is not None:
        budget = policy.budget_tokens
    if policy.keep_ratio is not None:
        budget = min(budget, policy.keep_ratio * total)
    limit = policy.top_k if policy.top_k is not None else len(chunks)
    kept: set[int] = set()
    used = 0
    for i in sorted(range(len(chunks)), key=lambda i: (-scores[i], i)):
        if len(kept) >= limit:
            break
        if len(kept) < policy.keep_at_least or used + chunks[i].tokens <= budget:
            kept.add(i)
            used += chunks[i].tokens
    return kept


def _drop_elements(text: str, drop: set[int]) -> str:
    """`text` without its `<document>` elements whose positions are in `drop`."""
    parts = DOC_ELEMENT.split(text)
    elements = DOC_ELEMENT.findall(text)
    out = [parts[0]]
    for n, element in enumerate(elements):
        out.append("" if n in drop else element)
        out.append(parts[n + 1])
    return "".join(out)


def rebuild(content: list[dict[str, Any]], chunks: list[Chunk], kept: set[int]) -> list[dict[str, Any]]:
    """The message content without the dropped chunks, everything else in its place and order."""
    dropped_blocks = {c.where[0] for n, c in enumerate(chunks) if n not in kept and len(c.where) == 1}
    dropped_elements: dict[int, set[int]] = {}
    for n, c in enumerate(chunks):
        if n not in kept and len(c.where) == 2:
            dropped_elements.setdefault(c.where[0], set()).add(c.where[1])
    out = []
    for i, block in enumerate(content):
        if i in dropped_blocks:
            continue
        if i in dropped_elements:
            block = {**block, "text": _drop_elements(block["text"], dropped_elements[i])}
        out.append(block)
    return out
