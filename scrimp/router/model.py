"""The learned router: p(the cheap model's answer is good enough) for a prompt.

Features: the prompt's all-MiniLM-L6-v2 embedding (the same local ONNX model the semantic cache uses) and
a few shape features (length, digits, maths and code markers). Model: L2-regularised logistic regression,
chosen by measurement on MMLU against kNN and gradient boosting (docs/routing.md). It is saved as plain
JSON (weights, scaler, threshold, provenance), scores one prompt in ~3 ms (one embedding) and trains in
minutes on two cores. Label: the cheap model did at least as well as the strong one."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from scrimp.tokens import count_tokens

_MATH = re.compile(r"[=+\-*/^<>≤≥∑∫√π]|\\frac|\\sqrt|\d")
_CODE = re.compile(r"```|def |class |\{|\}|;\s*$|#include|=>|\bfunction\b", re.MULTILINE)
SHAPE = ["log_tokens", "digit_share", "math_share", "code_marks", "lines", "question_marks"]
MAX_CHARS = 4000  # the embedder reads 256 tokens; the head of a long prompt is what it can use


def shape_features(prompt: str) -> list[float]:
    n = max(len(prompt), 1)
    return [math.log1p(count_tokens(prompt)), sum(ch.isdigit() for ch in prompt) / n,
            len(_MATH.findall(prompt)) / n, math.log1p(len(_CODE.findall(prompt))),
            math.log1p(prompt.count("\n")), math.log1p(prompt.count("?"))]


def _embedder(threads: int | None = None):
    from scrimp.cache.semantic.embedder import cache_dir, default_model_path
    from scrimp.cache.semantic.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(default_model_path(), cache_dir() / "minilm-base" / "model.onnx", batch_size=32,
                        threads=threads or 1)


class Router:
    def __init__(self, cheap: str, strong: str, weights: np.ndarray, bias: float, mean: np.ndarray,
                 scale: np.ndarray, threshold: float | None = None, info: dict[str, Any] | None = None) -> None:
        self.cheap, self.strong = cheap, strong
        self.weights, self.bias = weights, bias
        self.mean, self.scale = mean, scale
        self.threshold = threshold
        self.info = info or {}
        self._embed = None

    # -- features ------------------------------------------------------------------------------------------
    def _embedder_for(self, bulk: bool):
        if bulk:
            return _embedder(os.cpu_count())
        if self._embed is None:
            self._embed = _embedder(1)
        return self._embed

    def features(self, prompts: list[str], progress: bool = False) -> np.ndarray:
        return featurize(prompts, self._embedder_for(len(prompts) > 16), progress)

    # -- scoring ---------------------------------------------------------------------------------------------
    def p_from_features(self, X: np.ndarray) -> np.ndarray:
        z = ((X - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def p_cheap_ok(self, prompts: list[str], progress: bool = False) -> np.ndarray:
        return self.p_from_features(self.features(prompts, progress))

    def choose(self, prompt: str) -> str:
        if self.threshold is None:
            raise ValueError("router is not calibrated: run scrimp router calibrate")
        return self.cheap if self.p_cheap_ok([prompt])[0] >= self.threshold else self.strong

    # -- training --------------------------------------------------------------------------------------------
    @classmethod
    def fit_features(cls, X: np.ndarray, cheap_scores: np.ndarray, strong_scores: np.ndarray, cheap: str,
                     strong: str, C: float = 0.05, info: dict[str, Any] | None = None) -> Router:
        from sklearn.linear_model import LogisticRegression

        y = (np.asarray(cheap_scores) >= np.asarray(strong_scores)).astype(int)
        if len(set(y.tolist())) < 2:
            raise ValueError("the cheap model is good enough on every example (or on none): nothing to learn")
        mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
        lr = LogisticRegression(C=C, max_iter=3000).fit((X - mean) / scale, y)
        return cls(cheap, strong, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), mean, scale,
                   info={"C": C, "examples": len(y), "cheap_ok_share": float(y.mean()), **(info or {})})

    # -- files -------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        data = {"kind": "scrimp-router", "version": 1, "cheap": self.cheap, "strong": self.strong,
                "threshold": self.threshold, "features": {"embedding": "all-MiniLM-L6-v2", "shape": SHAPE},
                "bias": self.bias, "weights": self.weights.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "info": self.info}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1 if len(self.weights) < 50 else None))
        os.replace(tmp, path)  # never a half-written router where the gateway looks

    @classmethod
    def load(cls, path: str | Path) -> Router:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a router file ({exc})") from exc
        if data.get("kind") != "scrimp-router":
            raise ValueError(f"{path}: not a router file (scrimp router train writes them)")
        return cls(data["cheap"], data["strong"], np.asarray(data["weights"]), float(data["bias"]),
                   np.asarray(data["mean"]), np.asarray(data["scale"]), data.get("threshold"), data.get("info"))


def featurize(prompts: list[str], embedder: Any, progress: bool = False) -> np.ndarray:
    emb = embedder.embed([p[:MAX_CHARS] for p in prompts], progress=progress)
    shape = np.asarray([shape_features(p) for p in prompts], dtype=np.float32)
    return np.hstack([emb, shape]).astype(np.float64)


def out_of_fold(X: np.ndarray, cheap_scores: np.ndarray, strong_scores: np.ndarray, folds: int = 5,
                C: float = 0.05, seed: int = 0) -> np.ndarray:
    """p(cheap ok) for each example from a router that did not see it: honest scores to calibrate on."""
    idx = np.random.default_rng(seed).permutation(len(X))
    out = np.zeros(len(X))
    for k in range(folds):
        test = idx[k::folds]
        train = np.setdiff1d(idx, test)
        r = Router.fit_features(X[train], cheap_scores[train], strong_scores[train], "c", "s", C=C)
        out[test] = r.p_from_features(X[test])
    return out
