"""Choose the decision threshold from labelled pairs so the false-hit rate stays under a target.

A false hit is a non-duplicate answered from the cache. On the calibration pairs we take the lowest
threshold whose false-hit rate has a one-sided upper confidence bound (Clopper-Pearson) at or under the
target: with a few thousand non-duplicates the stated rate then holds on pairs never seen, not just on
these. The hit rate on duplicates at that threshold is what the cache is expected to catch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta


@dataclass
class Calibration:
    threshold: float
    target_false_hit: float
    confidence: float
    false_hit_rate: float  # measured on the calibration pairs
    false_hit_upper: float  # the bound the threshold was chosen by
    hit_rate: float
    pairs: int
    duplicates: int

    def to_dict(self) -> dict:
        return asdict(self)


def upper_bound(false_hits: int, negatives: int, confidence: float) -> float:
    if false_hits >= negatives:
        return 1.0
    return float(beta.ppf(confidence, false_hits + 1, negatives - false_hits))


def calibrate(scores: np.ndarray, labels: np.ndarray, target: float, confidence: float = 0.95) -> Calibration:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    neg = np.sort(scores[labels == 0])[::-1]  # highest first: the k-th is the threshold letting k through
    pos = scores[labels == 1]
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("calibration needs both duplicates (label 1) and non-duplicates (label 0)")
    allowed = 0  # largest k whose bound stays within target (the bound rises with k)
    while allowed < len(neg) and upper_bound(allowed + 1, len(neg), confidence) <= target:
        allowed += 1
    if allowed == 0:
        threshold = float(np.nextafter(neg[0], np.inf))  # strictly above every non-duplicate
    else:
        threshold = float(np.nextafter(neg[allowed], np.inf))  # lets exactly the `allowed` highest through
        if threshold > neg[allowed - 1]:  # ties: fall back to above them
            threshold = float(np.nextafter(neg[allowed - 1], np.inf))
    false_hits = int((neg >= threshold).sum())
    return Calibration(threshold=threshold, target_false_hit=target, confidence=confidence,
                       false_hit_rate=false_hits / len(neg),
                       false_hit_upper=upper_bound(false_hits, len(neg), confidence),
                       hit_rate=float((pos >= threshold).mean()), pairs=len(labels), duplicates=len(pos))
