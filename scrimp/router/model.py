"""The learned router: p(the cheap model's answer is good enough) for a prompt.

The prompt is embedded with all-MiniLM-L6-v2 (the semantic cache's local ONNX export, float weights). Its
`k` most similar training prompts vote with their measured gain (strong score - cheap score), weighted by
similarity; p_cheap_ok = (1 - expected gain) / 2, which is the probability that the cheap model is good
enough when it is never better than the strong one, and in any case orders prompts by how much the
strong model would add. Chosen by measurement on MMLU over logistic and ridge regression on the same
embeddings, TF-IDF models and blends (docs/routing.md). Scoring one prompt: one embedding (~4 ms) and a
matrix-vector product over the training set. Saved as one .npz: vectors (float16), gains, settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MAX_CHARS = 4000  # the embedder reads 256 tokens; the head of a long prompt is what it can use
SAME_TEXT = 0.99999  # cosine at which two prompts are the same text (left out when scoring training data)


def _embedder(threads: int | None = None):
    from scrimp.cache.semantic.embedder import cache_dir, default_model_path
    from scrimp.cache.semantic.onnx_embedder import LOOKUP_THREADS, OnnxEmbedder

    return OnnxEmbedder(default_model_path(), cache_dir() / "minilm-base" / "model-fused.onnx", batch_size=32,
                        threads=threads or LOOKUP_THREADS)


def embed_prompts(prompts: list[str], threads: int | None = None, progress: bool = False) -> np.ndarray:
    return _embedder(threads).embed([p[:MAX_CHARS] for p in prompts], progress=progress)


class Router:
    def __init__(self, cheap: str, strong: str, vectors: np.ndarray, gains: np.ndarray, k: int = 100,
                 threshold: float | None = None, info: dict[str, Any] | None = None) -> None:
        self.cheap, self.strong = cheap, strong
        self.vectors = np.asarray(vectors, np.float32)
        self.gains = np.asarray(gains, np.float32)
        self.k = min(k, len(self.gains))
        self.threshold = threshold
        self.info = info or {}
        self._embed = None

    # -- scoring -------------------------------------------------------------------------------------------
    def p_from_embeddings(self, E: np.ndarray, exclude_same: bool = False, chunk: int = 1024) -> np.ndarray:
        out = np.empty(len(E))
        for start in range(0, len(E), chunk):
            S = E[start:start + chunk] @ self.vectors.T
            if exclude_same:  # scoring the training prompts themselves: leave each one out
                S[S >= SAME_TEXT] = -np.inf
            k = min(self.k, S.shape[1] - 1) if exclude_same else self.k
            top = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < S.shape[1] else np.argsort(-S, axis=1)
            w = np.maximum(np.take_along_axis(S, top, 1), 0.0) + 1e-6
            expected_gain = (self.gains[top] * w).sum(1) / w.sum(1)
            out[start:start + chunk] = (1.0 - expected_gain) / 2.0
        return out

    def p_cheap_ok(self, prompts: list[str], progress: bool = False, exclude_same: bool = False) -> np.ndarray:
        if len(prompts) > 16:
            E = embed_prompts(prompts, os.cpu_count(), progress)
        else:
            if self._embed is None:
                self._embed = _embedder()  # lookups: loaded once
            E = self._embed.embed([p[:MAX_CHARS] for p in prompts])
        return self.p_from_embeddings(E, exclude_same)

    def choose(self, prompt: str) -> str:
        if self.threshold is None:
            raise ValueError("router is not calibrated: run scrimp router calibrate")
        return self.cheap if self.p_cheap_ok([prompt])[0] >= self.threshold else self.strong

    # -- training --------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, E: np.ndarray, cheap_scores: np.ndarray, strong_scores: np.ndarray, cheap: str, strong: str,
            k: int = 100, info: dict[str, Any] | None = None) -> Router:
        gains = np.asarray(strong_scores, float) - np.asarray(cheap_scores, float)
        if len(gains) < 2:
            raise ValueError("need at least two labelled prompts")
        return cls(cheap, strong, E, gains, k, info={"k": k, "examples": len(gains),
                                                     "cheap_ok_share": float((gains <= 0).mean()), **(info or {})})

    # -- files -------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        meta = {"kind": "scrimp-router", "version": 1, "cheap": self.cheap, "strong": self.strong, "k": self.k,
                "threshold": self.threshold, "embedding": "all-MiniLM-L6-v2", "info": self.info}
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, meta=np.asarray(json.dumps(meta)), vectors=self.vectors.astype(np.float16),
                            gains=self.gains)
        os.replace(tmp, path)  # never a half-written router where the gateway looks

    @classmethod
    def load(cls, path: str | Path) -> Router:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                vectors, gains = data["vectors"].astype(np.float32), data["gains"]
        except Exception as exc:
            raise ValueError(f"{path}: not a router file (scrimp router train writes them)") from exc
        if meta.get("kind") != "scrimp-router":
            raise ValueError(f"{path}: not a router file (scrimp router train writes them)")
        return cls(meta["cheap"], meta["strong"], vectors, gains, meta["k"], meta.get("threshold"), meta.get("info"))


def data_digest(prompts: list[str]) -> str:
    return hashlib.sha256("\x1e".join(prompts).encode()).hexdigest()[:16]
