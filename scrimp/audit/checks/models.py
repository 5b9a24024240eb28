"""Cheaper-model findings: a feature whose shadow evaluations show a cheaper model agreeing with the one that
answers (the saving is its calls repriced at the cheaper model), or a feature on a premium model that no
shadow evaluation has tested yet (an upper bound, and the config that would start measuring it)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding, answered, price, provider_of, usage_of

AGREEMENT = 0.9  # shadow agreement needed before a move is proposed as measured
MIN_SAMPLES = 10
TIERS = {"premium": 2, "mid": 1, "cheap": 0}


def cheaper_models(models: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """model -> the cheapest model of the same provider in a lower tier (from the config's models, or the
    simulator's default line-up of real model names)."""
    if models is None:
        from scrimp.sim.config import default_models

        models = {m.name: (m.provider, m.tier) for m in default_models() if m.kind == "chat"}
    out = {}
    for name, (provider, tier) in models.items():
        lower = [(TIERS[t], n) for n, (p, t) in models.items() if p == provider and TIERS.get(t, 1) < TIERS.get(tier, 1)]
        if lower:
            out[name] = min(lower)[1]
    return out


def model_moves(traffic: Traffic, cheaper: dict[str, str]) -> list[Finding]:
    tested: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in traffic.shadow:
        tested[s["feature"] or "-"].append(s)
    findings = []
    for feature, calls in traffic.by_feature().items():
        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in calls:
            if answered(c) and c["status"] == "ok":
                by_model[c["served_model"]].append(c)
        for model, served in by_model.items():
            shadows = [s for s in tested.get(feature, []) if s["strong_model"] == model]
            target = shadows[0]["cheap_model"] if shadows else cheaper.get(model)
            if target is None:
                continue
            spend = sum(c["cost_usd"] for c in served)
            at_target = sum(price(target, provider_of(target) or c["provider"], usage_of(c)) for c in served)
            usd = spend - at_target
            if usd <= 0:
                continue
            scores = [s["score"] for s in shadows if s["score"] is not None]
            if scores:
                agreement = sum(scores) / len(scores)
                if len(scores) < MIN_SAMPLES or agreement < AGREEMENT:
                    continue  # measured, and not good enough (or not yet enough samples): no proposal
                findings.append(Finding(
                    "cheaper_model", feature,
                    f"{target} agreed with {model} on {agreement:.0%} of {len(scores)} shadow checks of '{feature}'",
                    usd, traffic.per_month(usd), "router",
                    f"`- router: {{routes: {{{feature}: {{policy: rules, default: {target}, cheap: {target}, "
                    f"strong: {model}, shadow: {{share: 0.05}}, drift: {{target: {AGREEMENT}}}}}}}}}`",
                    evidence={"calls": len(served), "spend_usd": spend, "at_cheaper_usd": at_target,
                              "agreement": agreement, "samples": len(scores)}))
            else:
                findings.append(Finding(
                    "untested_model", feature,
                    f"'{feature}' runs on {model}; {target} has never been tested on it (up to ${usd:.2f} if it "
                    "could take every call)",
                    usd, traffic.per_month(usd), "router",
                    f"`- router: {{routes: {{{feature}: {{policy: rules, default: {model}, cheap: {target}, "
                    f"strong: {model}, shadow: {{share: 0.1, max_usd_per_day: 1.0}}}}}}}}` then "
                    "`scrimp audit` again once shadow checks are in",
                    confidence="untested",
                    evidence={"calls": len(served), "spend_usd": spend, "at_cheaper_usd": at_target}))
    return findings
