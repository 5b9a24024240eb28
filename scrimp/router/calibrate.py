"""Pick the learned router's threshold for a quality target.

Target: quality >= `target` x the strong model's quality (e.g. 0.95). For each candidate threshold the
routed quality's ratio to strong quality is bootstrapped; the chosen threshold is the lowest strong-model
share whose lower `confidence` bound still meets the target. Scores should be out-of-fold (not from the
data the router was fitted on), or the threshold will be too optimistic."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class RouterCalibration:
    threshold: float  # send to cheap when p_cheap_ok >= threshold
    target_quality: float
    confidence: float
    strong_share: float  # expected share of strong-model calls
    quality_ratio: float  # routed quality / strong quality on the calibration data
    quality_ratio_lower: float
    examples: int

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(p: np.ndarray, cheap: np.ndarray, strong: np.ndarray, target: float, confidence: float = 0.95,
              boot: int = 300, seed: int = 0) -> RouterCalibration:
    p, cheap, strong = np.asarray(p, float), np.asarray(cheap, float), np.asarray(strong, float)
    n = len(p)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, n, size=(boot, n))
    # candidate thresholds: the distinct scores (and +inf: everything to the strong model)
    cands = np.unique(np.concatenate([p, [np.inf]]))
    cands = cands[np.linspace(0, len(cands) - 1, min(len(cands), 400)).astype(int)]
    best = None
    for t in cands[::-1]:  # from all-strong towards all-cheap; keep the lowest share that still holds
        to_cheap = p >= t
        quality = np.where(to_cheap, cheap, strong)
        sq = strong[samples].mean(axis=1)
        rq = quality[samples].mean(axis=1)
        ratios = np.where(sq > 0, rq / np.maximum(sq, 1e-12), 1.0)
        lower = float(np.quantile(ratios, 1 - confidence))
        if lower >= target:
            ratio = float(quality.mean() / strong.mean()) if strong.mean() > 0 else 1.0
            best = RouterCalibration(float(t), target, confidence, float(1 - to_cheap.mean()), ratio, lower, n)
        else:
            break
    if best is None:  # even all-strong cannot be certified (noisy data): route everything to strong
        best = RouterCalibration(float("inf"), target, confidence, 1.0, 1.0, 1.0, n)
    return best
