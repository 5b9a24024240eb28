"""Choose the confidence threshold above which the classifier answers, so that the answers it serves agree with
the LLM's at least at a target rate, with a stated confidence.

On held-out examples (each scored by a model that never saw it) sort by confidence; serving the top k has e_k
disagreements. We take the largest k whose one-sided Clopper-Pearson upper bound on the disagreement rate is within
1 - target (the semantic cache's statistical helper, scrimp.cache.semantic.calibrate.upper_bound), so the stated
agreement holds on calls never seen, not only on these. Ties in confidence are served together or not at all.
With too few held-out examples for the target even the most confident ones leave a bound over it: the calibration
is then not `supported` and `scrimp offload train` refuses to write the model unless told --force."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from scrimp.cache.semantic.calibrate import non_duplicates_needed, upper_bound


@dataclass
class AgreementCalibration:
    threshold: float  # answer locally when confidence >= threshold (inf: never)
    target_agreement: float
    confidence: float
    coverage: float  # share of the held-out examples answered locally at the threshold
    agreement: float  # of those, the share agreeing with the LLM
    agreement_lower: float  # the bound the threshold was chosen by
    examples: int
    served: int

    @property
    def supported(self) -> bool:
        return self.served > 0 and self.agreement_lower >= self.target_agreement - 1e-9

    def shortfall(self) -> str:
        need = non_duplicates_needed(1 - self.target_agreement, self.confidence)
        return (f"the {self.examples} held-out examples cannot support {self.target_agreement:.1%} agreement at "
                f"{self.confidence:.0%} confidence: even the most confident answers leave a lower bound under the "
                f"target; with no disagreement at all this needs at least {need} examples answered locally")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["threshold"] = None if math.isinf(self.threshold) else self.threshold
        return {**out, "supported": self.supported}


def calibrate(conf: np.ndarray, agrees: np.ndarray, target: float, confidence: float = 0.95) -> AgreementCalibration:
    conf = np.asarray(conf, dtype=np.float64)
    agrees = np.asarray(agrees, dtype=bool)
    n = len(conf)
    if n == 0:
        raise ValueError("calibration needs held-out examples")
    order = np.argsort(-conf, kind="stable")
    c, wrong = conf[order], np.cumsum(~agrees[order])
    # candidate cut points: after the last of a run of equal confidences (ties go together)
    ends = np.flatnonzero(np.append(c[1:] != c[:-1], True))
    best: tuple[int, float] | None = None  # (served, lower bound)
    for end in ends:
        k = int(end) + 1
        e = int(wrong[end])
        if e / k > 1 - target:  # the point estimate already misses: no bound can hold
            continue
        lower = 1 - upper_bound(e, k, confidence)
        if lower >= target:
            best = (k, lower)
    if best is None:
        return AgreementCalibration(float("inf"), target, confidence, 0.0, 1.0, 0.0, n, 0)
    k, lower = best
    threshold = float(c[k - 1])
    return AgreementCalibration(threshold, target, confidence, k / n, 1 - int(wrong[k - 1]) / k, lower, n, k)
