"""Request features for the learned router: a sentence embedding of the prompt plus cheap lexical ones.

The embedding (all-MiniLM-L6-v2, run locally) says what a prompt is about; the lexical features say how
it is put: length, numbers and math notation, code, how the question is asked, negations, enumerations.
Only the embedding costs anything (a few milliseconds, growing with the prompt: docs/routing.md); the
lexical pass is a few regex sweeps (tens of microseconds)."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from scrimp.cache.semantic.normalize import normalize
from scrimp.tokens import count_tokens

EMBEDDING = "all-MiniLM-L6-v2"
MAX_CHARS = 4000  # the embedder reads 256 tokens; more text only costs tokenizer time

_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH = re.compile(r"[=+\-*/^<>≤≥≠±×÷√∑∫∞πθ]|\\(?:frac|sqrt|sum|int|cdot|times|le|ge|pi|alpha|beta|theta)\b")
_LATEX = re.compile(r"\$|\\[a-zA-Z]+")
_CODE = re.compile(r"```|\bdef |\breturn\b|\bprint\(|[{};]\s*$|^\s{4,}\S|==|!=|\+\+|->|=>", re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ENUM = re.compile(r"^\s*(?:[A-Za-z]|[0-9]{1,2}|[IVX]{1,4})[.)]\s", re.MULTILINE)
_QWORDS = {
    "what": ("what",), "which": ("which",), "why_how": ("why", "how"),
    "compute": ("calculate", "compute", "find", "solve", "evaluate", "determine", "estimate", "simplify"),
    "prove": ("prove", "show", "derive", "explain"),
    "negation": ("not", "except", "false", "incorrect", "least", "never", "untrue"),
    "statement": ("statement", "statements", "true", "valid", "correct"),
}
_QWORD_OF = {w: name for name, words in _QWORDS.items() for w in words}

LEXICAL = ["log_tokens", "log_chars", "log_lines", "digit_share", "log_numbers", "math_share", "latex_share",
           "code_lines_share", "enum_items", "avg_word_len", "long_word_share", "upper_share",
           "question_marks", *[f"q_{name}" for name in _QWORDS]]


def lexical(prompt: str) -> np.ndarray:
    """One row of `LEXICAL` (float32). Shares are per character or per word, so prompts of any length compare."""
    n = max(len(prompt), 1)
    words = _WORD.findall(prompt)
    nw = max(len(words), 1)
    lines = prompt.count("\n") + 1
    lower = [w.lower() for w in words]
    q = dict.fromkeys(_QWORDS, 0)
    for w in lower:
        name = _QWORD_OF.get(w)
        if name:
            q[name] += 1
    row = [
        math.log1p(count_tokens(prompt)), math.log1p(len(prompt)), math.log1p(lines),
        len(_DIGIT.findall(prompt)) / n, math.log1p(len(_NUMBER.findall(prompt))),
        len(_MATH.findall(prompt)) / n, len(_LATEX.findall(prompt)) / n,
        len(_CODE.findall(prompt)) / lines, min(len(_ENUM.findall(prompt)), 20) / 10,
        sum(map(len, words)) / nw, sum(len(w) >= 10 for w in words) / nw,
        sum(c.isupper() for c in prompt) / n, min(prompt.count("?"), 10) / 5,
        *[min(q[name], 5) / 5 for name in _QWORDS],  # counts, capped: presence matters more than repetition
    ]
    return np.asarray(row, dtype=np.float32)


def lexical_matrix(prompts: list[str]) -> np.ndarray:
    return np.stack([lexical(p) for p in prompts]) if prompts else np.zeros((0, len(LEXICAL)), np.float32)


def _onnx_embedder(threads: int | None, int8: bool):
    from scrimp.embedding import shared_minilm

    return shared_minilm(int8=int8, threads=threads)


class Featurizer:
    """Embeds prompts (loaded once, lazily) and computes the lexical features.

    The semantic cache's ONNX export of MiniLM is used, with int8 weights by default: on MMLU the router
    ranked prompts as well as with the float export (APGR 0.691 both, measured on the prompt as written)
    and a decision costs half as much (docs/routing.md). `int8=False` uses the float export (equal to `LocalEmbedder` to 1e-4);
    `runtime="torch"` uses `LocalEmbedder` itself. A router file records which one it was trained with.

    With `normalize` (routers trained by this version) the embedded text is the final user turn normalised
    as the semantic cache normalises it, so a request that passes both stages is embedded once
    (`Call.embeddings`); the lexical and TF-IDF scorers still read the prompt as written."""

    def __init__(self, runtime: str = "onnx", int8: bool = True, normalize: bool = True) -> None:
        self.runtime = runtime
        self.int8 = int8 and runtime == "onnx"
        self.normalize = normalize
        self._lookup = None
        self._bulk = None

    def _embedder(self, bulk: bool):
        if self.runtime == "torch":
            from scrimp.embedding.embedder import LocalEmbedder

            if self._lookup is None:
                self._lookup = LocalEmbedder()
            return self._lookup
        if bulk:  # many prompts: every core
            if self._bulk is None:
                self._bulk = _onnx_embedder(os.cpu_count(), self.int8)
            return self._bulk
        if self._lookup is None:  # one request: the lookup setting the semantic cache measured as fastest
            self._lookup = _onnx_embedder(None, self.int8)
        return self._lookup

    def embedded_text(self, prompt: str) -> str:
        """The text whose embedding this featurizer uses for `prompt`."""
        return (normalize(prompt) if self.normalize else prompt)[:MAX_CHARS]

    def embedder_key(self) -> str:
        """The key of the embedder used for one request (see `Embedder.key`)."""
        return self._embedder(bulk=False).key

    def embed(self, prompts: list[str], progress: bool = False) -> np.ndarray:
        if not prompts:
            return np.zeros((0, 384), np.float32)
        emb = self._embedder(len(prompts) > 16)
        return emb.embed([self.embedded_text(p) for p in prompts], progress=progress)

    def spec(self) -> dict:
        return {"embedding": EMBEDDING, "runtime": self.runtime, "int8": self.int8, "normalize": self.normalize,
                "max_chars": MAX_CHARS, "lexical": LEXICAL}
