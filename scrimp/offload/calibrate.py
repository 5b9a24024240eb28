"""Choose the confidence threshold above which the classifier answers, so that the answers it serves agree with
the LLM's at least at a target rate, with a stated confidence.

On held-out examples (each scored by a model that never saw it) sort by confidence; serving the top k has e_k
disagreements. We take the largest k whose one-sided Clopper-Pearson upper bound on the disagreement rate is within
1 - target (the semantic cache's statistical helper, scrimp.cache.semantic.calibrate.upper_bound), so the stated
agreement holds on calls never seen, not only on these. Ties in confidence are served together or not at all.
With too few held-out examples for the target even the most confident ones leave a bound over it: the calibration
is then not `supported` and `scrimp offload train` refuses to write the model unless told --force.

Label shift. Traffic's mix of labels moves: an out-of-scope label ("none of these") may be 1% of the training data
and a fifth of next week's calls, and its examples, being diverse, are the ones served wrongly. So the threshold must
also keep the agreement at the target (point estimate) when any one diverse label (`shift_labels`: the training
picks the labels whose examples are spread out, see training.diverse_labels) with at least `min_label_examples`
held-out examples makes up `shift` (25%) of the traffic, the rest keeping their proportions: for label L with
served-wrong and served rates w_L, v_L among its own examples, and W, V among the others',
s*w_L + (1-s)*W <= (1 - target) * (s*v_L + (1-s)*V). Without that, a banking77 experiment with 15 intents merged into one rare "oos" label (2% of
train, 19% of test) served 96.9% agreement on test against a 98% target (an MLP without the TF-IDF view;
docs/offload.md)."""

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
    shift: float = 0.0  # the share one label was allowed to reach (0: no label-shift check)
    worst_label: str | None = None  # the label whose shift bound the threshold most
    worst_label_agreement: float | None = None  # the agreement if that label were `shift` of the traffic

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


def calibrate(conf: np.ndarray, agrees: np.ndarray, target: float, confidence: float = 0.95,
              labels: np.ndarray | None = None, shift: float = 0.25, shift_labels: set[str] | None = None,
              min_label_examples: int = 20) -> AgreementCalibration:
    """`labels`: each held-out example's true label (the LLM's), for the label-shift check of `shift_labels` (every
    label when None); no check without `labels`."""
    conf = np.asarray(conf, dtype=np.float64)
    agrees = np.asarray(agrees, dtype=bool)
    n = len(conf)
    if n == 0:
        raise ValueError("calibration needs held-out examples")
    order = np.argsort(-conf, kind="stable")
    c, wrong = conf[order], np.cumsum(~agrees[order])
    # candidate cut points: after the last of a run of equal confidences (ties go together)
    ends = np.flatnonzero(np.append(c[1:] != c[:-1], True))
    shifted = _shifted_agreement(order, agrees, labels, ends, shift, min_label_examples, shift_labels) \
        if labels is not None else None
    best: tuple[int, float, int] | None = None  # (served, lower bound, index into ends)
    for i, end in enumerate(ends):
        k = int(end) + 1
        e = int(wrong[end])
        if e / k > 1 - target:  # the point estimate already misses: no bound can hold
            continue
        if shifted is not None and shifted[0][i] < target:
            continue
        lower = 1 - upper_bound(e, k, confidence)
        if lower >= target:
            best = (k, lower, i)
    if best is None:
        return AgreementCalibration(float("inf"), target, confidence, 0.0, 1.0, 0.0, n, 0,
                                    shift if shifted is not None else 0.0)
    k, lower, i = best
    threshold = float(c[k - 1])
    worst = (str(shifted[1][i]), float(shifted[0][i])) if shifted is not None and shifted[1][i] is not None \
        else (None, None)
    return AgreementCalibration(threshold, target, confidence, k / n, 1 - int(wrong[k - 1]) / k, lower, n, k,
                                shift if shifted is not None else 0.0, *worst)


def _shifted_agreement(order: np.ndarray, agrees: np.ndarray, labels: np.ndarray, ends: np.ndarray, shift: float,
                       min_examples: int, only: set[str] | None) -> tuple[np.ndarray, list[str | None]]:
    """For each cut point, the lowest agreement (and its label) over the mixes where one label is `shift` of the
    traffic."""
    labels = np.asarray(labels, dtype=object)[order]
    wrong_all = np.cumsum(~agrees[order])[ends].astype(np.float64)
    served_all = (ends + 1).astype(np.float64)
    n = len(labels)
    worst = np.ones(len(ends))
    worst_label: list[str | None] = [None] * len(ends)
    names, counts = np.unique(labels, return_counts=True)
    for name, n_l in zip(names, counts):
        if n_l < min_examples or n_l == n or (only is not None and name not in only):
            continue
        mine = labels == name
        wrong_l = np.cumsum(mine & ~agrees[order])[ends]
        served_l = np.cumsum(mine)[ends]
        w = shift * wrong_l / n_l + (1 - shift) * (wrong_all - wrong_l) / (n - n_l)
        v = shift * served_l / n_l + (1 - shift) * (served_all - served_l) / (n - n_l)
        agreement = 1 - w / np.maximum(v, 1e-12)
        lower = agreement < worst
        worst = np.where(lower, agreement, worst)
        for j in np.flatnonzero(lower):
            worst_label[j] = str(name)
    return worst, worst_label
