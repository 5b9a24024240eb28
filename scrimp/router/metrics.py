"""RouteLLM's metrics for a router on labelled data.

Sweep the threshold so the share of calls sent to the strong model goes from 0% to 100%: quality as a
function of that share is the router's curve. APGR = (area under the curve - cheap quality) /
(strong quality - cheap quality). CPT(x%) = the smallest strong share at which the router recovers x% of
the gap. Requests are sent to the strong model in order of lowest p(cheap is good enough) first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Curve:
    share: np.ndarray  # strong-model share, 0..1 (n + 1 points)
    quality: np.ndarray  # mean quality at that share


def curve(p_cheap_ok: np.ndarray, cheap: np.ndarray, strong: np.ndarray) -> Curve:
    order = np.argsort(p_cheap_ok, kind="stable")  # least confident in the cheap model go strong first
    gain = (strong - cheap)[order]
    n = len(gain)
    quality = (cheap.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    return Curve(np.arange(n + 1) / n, quality)


def oracle_scores(cheap: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """A router that knows the answers: the strong model only where it does better."""
    return -(strong - cheap)


def apgr(c: Curve, cheap_q: float, strong_q: float) -> float:
    gap = strong_q - cheap_q
    if gap <= 0:
        return float("nan")
    area = float(np.trapezoid(c.quality, c.share))
    return (area - cheap_q) / gap


def cpt(c: Curve, cheap_q: float, strong_q: float, x: float) -> float:
    target = cheap_q + x * (strong_q - cheap_q)
    hit = np.flatnonzero(c.quality >= target - 1e-12)
    return float(c.share[hit[0]]) if len(hit) else 1.0


def summary(p_cheap_ok: np.ndarray, cheap: np.ndarray, strong: np.ndarray) -> dict[str, float]:
    c = curve(p_cheap_ok, cheap, strong)
    cq, sq = float(cheap.mean()), float(strong.mean())
    return {"apgr": apgr(c, cq, sq), "cpt50": cpt(c, cq, sq, 0.5), "cpt80": cpt(c, cq, sq, 0.8),
            "cheap_quality": cq, "strong_quality": sq}


def random_summary(cheap: np.ndarray, strong: np.ndarray, trials: int = 20, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    runs = [summary(rng.random(len(cheap)), cheap, strong) for _ in range(trials)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
