"""Evaluate an offload model on labelled examples exactly as the gateway decides: each prompt embedded the same
way, answered locally when the confidence clears the threshold; coverage is the share answered locally and
agreement the share of those whose label equals the LLM's."""

from __future__ import annotations

import math
from typing import Any

from scrimp.offload.labels import label_of
from scrimp.offload.model import OffloadModel
from scrimp.offload.training import embed


def evaluate(model: OffloadModel, prompts: list[str], answers: list[str], *, threshold: float | None = None,
             progress: bool = False, vectors: Any = None) -> dict[str, Any]:
    x = vectors if vectors is not None else embed(prompts, progress)
    decisions = model.decide(list(prompts), x, threshold)
    truth = [label_of(a) for a in answers]
    served = [d for d, _ in zip(decisions, truth) if d.served]
    agreed = sum(d.label == t for d, t in zip(decisions, truth) if d.served)
    known = set(model.labels)
    n = len(prompts)
    t = model.threshold if threshold is None else threshold
    return {"examples": n, "served": len(served), "agreed": agreed,
            "coverage": len(served) / n if n else 0.0,
            "agreement": agreed / len(served) if served else None,
            "accuracy": sum(d.label == t_ for d, t_ in zip(decisions, truth)) / n if n else 0.0,
            "threshold": None if math.isinf(t) else t, "unknown_labels": sum(lab not in known for lab in truth)}
