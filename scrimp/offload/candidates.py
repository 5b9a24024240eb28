"""Offload candidates from the request log: features whose answers are a small label set, with enough volume, and
what offloading each would save at what agreement.

A feature qualifies on its answers alone (scrimp.offload.labels.check). With `estimate`, a model is trained on its
newest logged answers exactly as `scrimp offload train` would (cross-fitted calibration) and the coverage it would
reach at the target agreement prices the saving: that share of the feature's provider spend, less the shadow
checks (the default 5% of the calls answered locally)."""

from __future__ import annotations

from typing import Any

from scrimp.offload import labels as labels_mod
from scrimp.offload.logged import by_feature, since_days, spend_by_feature
from scrimp.offload.shadow import ShadowOptions
from scrimp.offload.training import TrainSettings, train


def find(store: Any, *, days: float, tenant: str | None, min_calls: int, max_labels: int, target: float,
         estimate: bool = True, progress: bool = False, sample: int = 5000) -> list[dict[str, Any]]:
    since = since_days(days)
    traffic = by_feature(store, since=since, tenant=tenant, sample=sample)
    spend = spend_by_feature(store, since, tenant)
    settings = TrainSettings(target_agreement=target, max_labels=max_labels)
    shadow_share = ShadowOptions().share
    out = []
    for name, f in sorted(traffic.items(), key=lambda kv: -spend.get(kv[0], (0, 0.0))[1]):
        if f.calls < min_calls:
            continue
        labels = [labels_mod.label_of(a) for a in f.pairs.answers]
        stats = labels_mod.stats(labels, settings.min_per_label)
        row: dict[str, Any] = {"feature": name, "calls": f.calls, "answers_sampled": len(f.pairs),
                               "labels": stats.frequent_labels, "distinct_answers": stats.labels,
                               "top_labels": stats.top, "spend_usd": spend.get(name, (0, 0.0))[1],
                               "offloadable": True, "reason": None, "coverage": None, "agreement": None,
                               "agreement_lower": None, "saving_usd": None}
        try:
            labels_mod.check(labels, max_labels=max_labels, min_per_label=settings.min_per_label,
                             min_share=settings.min_share, min_examples=settings.min_examples)
        except labels_mod.NotALabelSet as exc:
            row.update(offloadable=False, reason=str(exc))
            out.append(row)
            continue
        if estimate:
            cal = train(f.pairs.prompts, f.pairs.answers, settings, progress=progress).calibration
            row.update(coverage=cal.coverage, agreement=cal.agreement, agreement_lower=cal.agreement_lower)
            if not cal.supported:
                row.update(offloadable=False, reason=cal.shortfall(), coverage=0.0)
            row["saving_usd"] = row["spend_usd"] * row["coverage"] * (1 - shadow_share)
        out.append(row)
    return out
