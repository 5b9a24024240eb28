"""Train an offload model: embed the prompts, check the answers are a small label set, fit a small classifier on the
embeddings (classifier.py), and calibrate its confidence threshold on held-out examples.

Held out by cross-fitting: the examples are split into `folds`; each fold is scored by a model fitted on the others,
so every example gets a confidence from a model that never saw it and the whole file calibrates (a single held-out
slice of a fifth would state a looser bound on fewer examples; bench/offload_banking77.py measures both). The model
that serves is then fitted on every example. Labels seen fewer than `min_per_label` times are not learned, but their
examples stay in the calibration as calls the model would get wrong if it answered them."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from scrimp.offload import labels as labels_mod
from scrimp.offload.calibrate import AgreementCalibration, calibrate
from scrimp.offload.classifier import Classifier
from scrimp.offload.model import OffloadModel


@dataclass
class TrainSettings:
    target_agreement: float = 0.98
    confidence: float = 0.95
    folds: int = 5
    holdout: float | None = None  # calibrate on this share instead of cross-fitting (bench comparison)
    max_labels: int = 200
    min_per_label: int = 3
    min_share: float = 0.9  # of the examples, the share whose answer is a recurring label
    min_examples: int = 30
    shift: float = 0.25  # the agreement must hold if any one label became this share of the traffic
    seed: int = 0


@dataclass
class Trained:
    model: OffloadModel
    calibration: AgreementCalibration
    stats: labels_mod.LabelStats
    seconds: dict[str, float]


def embed(prompts: list[str], progress: bool = False, embedder: Any = None) -> np.ndarray:
    from scrimp.embedding import shared_minilm

    emb = embedder or shared_minilm(int8=True)
    return np.asarray(emb.embed(list(prompts), progress=progress), dtype=np.float32)


def fit(texts: list[str], x: np.ndarray, y: np.ndarray, seed: int, bar: Any) -> tuple[np.ndarray, Classifier]:
    """(classes, classifier) fitted on the texts, their vectors and labels."""
    classes, index = np.unique(y, return_inverse=True)
    done = [0.0]

    def tick(fraction: float) -> None:
        bar.update(fraction - done[0])
        done[0] = fraction

    return classes, Classifier.fit(texts, x, index, len(classes), seed, tick)


def held_out_scores(texts: list[str], x: np.ndarray, y: np.ndarray, learnable: np.ndarray, s: TrainSettings,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, confidence, agrees) for the held-out examples: each scored by a model that did not see it."""
    rng = np.random.default_rng(s.seed)
    n = len(y)
    if s.holdout is not None:
        perm = rng.permutation(n)
        cut = round(n * s.holdout)
        splits = [perm[:cut]]
    else:
        # stratified: each label spread over the folds, so a rare label is still learned from the others
        order = np.lexsort((rng.random(n), y))
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[order] = np.arange(n) % s.folds
        splits = [np.flatnonzero(fold_of == k) for k in range(s.folds)]
    bar = _bar(len(splits), "calibrating (held-out folds)", progress)
    idx, conf, agrees = [], [], []
    for test in splits:
        train = np.setdiff1d(np.arange(n), test)
        train = train[learnable[train]]
        classes, clf = fit([texts[i] for i in train], x[train], y[train], s.seed, bar)
        p = clf.probabilities([texts[i] for i in test], x[test])
        best = p.argmax(axis=1)
        idx.append(test)
        conf.append(p[np.arange(len(test)), best])
        agrees.append(classes[best] == y[test])
    bar.close()
    return np.concatenate(idx), np.concatenate(conf), np.concatenate(agrees)


def train(prompts: list[str], answers: list[str], s: TrainSettings | None = None, *, progress: bool = False,
          vectors: np.ndarray | None = None, source: str = "") -> Trained:
    """Raises labels.NotALabelSet (with the reason) when the answers are not a small label set."""
    s = s or TrainSettings()
    labels = [labels_mod.label_of(a) for a in answers]
    stats = labels_mod.check(labels, max_labels=s.max_labels, min_per_label=s.min_per_label,
                             min_share=s.min_share, min_examples=s.min_examples)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    x = vectors if vectors is not None else embed(prompts, progress)
    seconds["embed"] = time.perf_counter() - t0
    y = np.asarray(labels, dtype=object)
    counts = {lab: n for lab, n in zip(*np.unique(y, return_counts=True))}
    learnable = np.asarray([counts[lab] >= s.min_per_label for lab in labels])
    t0 = time.perf_counter()
    idx, conf, agrees = held_out_scores(prompts, x, y, learnable, s, progress)
    diverse = diverse_labels(x[learnable], y[learnable])
    cal = calibrate(conf, agrees, s.target_agreement, s.confidence, labels=y[idx], shift=s.shift,
                    shift_labels=diverse)
    seconds["calibrate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bar = _bar(1, "fitting the model", progress)
    classes, clf = fit([p for p, ok in zip(prompts, learnable) if ok], x[learnable], y[learnable], s.seed, bar)
    bar.close()
    seconds["fit"] = time.perf_counter() - t0
    rendering = labels_mod.renderings(answers, labels)
    info = {"calibration": {**cal.to_dict(), "shift_labels": sorted(diverse)}, "labels_stats": stats.to_dict(),
            "training": {"examples": len(prompts), "source": source, "digest": digest(prompts, answers),
                         "classifier": "mlp+tfidf", "folds": None if s.holdout is not None else s.folds,
                         "holdout": s.holdout,
                         "seconds": {k: round(v, 2) for k, v in seconds.items()}}}
    model = OffloadModel([str(c) for c in classes], clf,
                         {str(c): rendering[str(c)] for c in classes}, cal.threshold, info)
    return Trained(model, cal, stats, seconds)


def diverse_labels(x: np.ndarray, y: np.ndarray, ratio: float = 0.8) -> set[str]:
    """Labels whose examples are spread out, as an out-of-scope label's are: the length of the mean of their unit
    vectors (1 when all alike, near 0 when they point everywhere) under `ratio` x the median label's. On banking77's
    train file every intent is within 0.66-0.86 (median 0.77); 15 of its intents merged into one label, 0.51."""
    names = np.unique(y)
    tightness = {str(n): float(np.linalg.norm(x[y == n].mean(axis=0))) for n in names}
    median = float(np.median(list(tightness.values())))
    return {n for n, t in tightness.items() if t < ratio * median}


def digest(prompts: list[str], answers: list[str]) -> str:
    h = hashlib.sha256()
    for p, a in zip(prompts, answers):
        h.update(p.encode() + b"\x1f" + a.encode() + b"\x1e")
    return h.hexdigest()[:16]


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fit", disable=not progress, leave=False,
                bar_format="{l_bar}{bar}| {n:.1f}/{total} fits [{elapsed}<{remaining}]")
