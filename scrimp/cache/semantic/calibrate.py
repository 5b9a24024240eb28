"""Choose the decision threshold from labelled pairs so the false-hit rate stays under a target.

A false hit is a non-duplicate answered from the cache. On the calibration pairs we take the lowest
threshold whose false-hit rate has a one-sided upper confidence bound (Clopper-Pearson) at or under the
target: with a few thousand non-duplicates the stated rate then holds on pairs never seen, not just on
these. The hit rate on duplicates at that threshold is what the cache is expected to catch.

When there are too few non-duplicates for the target even a threshold above all of them leaves a bound over
it (zero false hits among n bound the rate at about 3/n at 95%): the calibration is then not `supported`,
and `scrimp cache calibrate` / `train` refuse to write the model unless told `--force`."""

from __future__ import annotations

import math
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

    @property
    def supported(self) -> bool:
        """Whether the pairs back the target: the upper bound at the chosen threshold is within it."""
        return self.false_hit_upper <= self.target_false_hit * (1 + 1e-9)

    def shortfall(self) -> str:
        """Why the pairs do not support the target (for an unsupported calibration)."""
        negatives = self.pairs - self.duplicates
        false_hits = round(self.false_hit_rate * negatives)
        return (f"the pairs cannot support a false-hit rate of {self.target_false_hit:.2%}: at threshold "
                f"{self.threshold:.4g} ({false_hits} false hits among {negatives} non-duplicates) the "
                f"{self.confidence:.0%} upper bound on the false-hit rate is {self.false_hit_upper:.2%}, above "
                f"the target; even with no false hit this target needs at least "
                f"{non_duplicates_needed(self.target_false_hit, self.confidence)} non-duplicates")

    def to_dict(self) -> dict:
        return {**asdict(self), "supported": self.supported}


def non_duplicates_needed(target: float, confidence: float) -> int:
    """The fewest non-duplicates whose bound, with no false hit among them, is within `target`."""
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(1 - target)))
    while upper_bound(0, n, confidence) > target * (1 + 1e-9):  # guard the closed form's rounding
        n += 1
    return n


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
