"""How relevant each passage is to a question: BM25 over words and MiniLM cosine, fused.

BM25 finds the rare words a question shares with a passage (names, numbers, titles); the embedding finds
paraphrases. Each is turned into a rank-free score in [0, 1] per request (BM25 divided by its best score,
cosine min-max scaled) and the two are mixed with `bm25_weight`. Vectors are kept in a small LRU keyed by
the text, so a conversation's turns are embedded once, not on every request.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter, OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Function words carry no topic; dropping them keeps BM25 on what the question is about.
STOPWORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "about", "after", "again", "all", "am", "any", "because", "before", "being", "both", "can", "could", "each", "few", "more", "most", "other", "own", "same", "should", "some", "such", "too", "very", "just", "also", "up", "out", "over", "under", "did", "doing", "don", "t", "s", "re", "ve", "ll", "m", "d"])


@lru_cache(maxsize=50_000)  # a conversation's turns are scored again on every request
def words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)


def bm25(query: str, docs: list[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of each doc for the query, the collection being these docs (a request's own passages)."""
    toks = [words(d) for d in docs]
    n = len(docs)
    if n == 0:
        return np.zeros(0, np.float32)
    avg = sum(len(t) for t in toks) / n or 1.0
    df: Counter[str] = Counter()
    for t in toks:
        df.update(set(t))
    q = set(words(query))
    out = np.zeros(n, np.float32)
    for i, t in enumerate(toks):
        tf = Counter(t)
        norm = k1 * (1 - b + b * len(t) / avg)
        s = 0.0
        for w in q:
            f = tf.get(w)
            if f:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * f * (k1 + 1) / (f + norm)
        out[i] = s
    return out


class VectorCache:
    """Sentence vectors by text (sha1), least recently used forgotten past `max_items`; thread-safe (the stage
    scores off the event loop)."""

    def __init__(self, embedder: Any, max_items: int = 20_000) -> None:
        self.embedder = embedder
        self.max_items = max_items
        self._vecs: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).digest() for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._vecs]
        if missing:
            fresh = self.embedder.embed([texts[i] for i in missing])
            for i, vec in zip(missing, fresh, strict=True):
                self._vecs[keys[i]] = vec
        out = []
        for k in keys:
            self._vecs.move_to_end(k)
            out.append(self._vecs[k])
        while len(self._vecs) > self.max_items:
            self._vecs.popitem(last=False)
        return np.asarray(out, np.float32).reshape(len(texts), -1)


def _unit(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def _minmax(x: np.ndarray) -> np.ndarray:
    if not len(x):
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


class Relevance:
    """Scores passages against a question. `vectors` is None for BM25 alone (no embedder configured)."""

    def __init__(self, vectors: VectorCache | None, bm25_weight: float = 0.5, embed_chars: int | None = None) -> None:
        self.vectors = vectors
        self.bm25_weight = bm25_weight
        self.embed_chars = embed_chars  # embed only each passage's lead (its title and first sentences): 5x faster

    def cosine(self, query: str, docs: list[str]) -> np.ndarray:
        assert self.vectors is not None
        if self.embed_chars:
            docs = [d[: self.embed_chars] for d in docs]
        vecs = self.vectors.embed([query, *docs])
        return vecs[1:] @ vecs[0]

    def scores(self, query: str, docs: list[str]) -> np.ndarray:
        lexical = _unit(bm25(query, docs))
        if self.vectors is None or not docs or self.bm25_weight >= 1:
            return lexical  # bm25_weight 1: lexical only, no embedding time
        dense = _minmax(self.cosine(query, docs))
        return self.bm25_weight * lexical + (1 - self.bm25_weight) * dense
