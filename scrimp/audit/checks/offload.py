"""Offload candidates: features whose answers are few and repeat (a label, a canned reply), which a small local
model trained on the request log's pairs could give instead of a paid call."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding, answered
from scrimp.requestlog.template import normalise

MIN_CALLS = 30
MIN_REPEATS = 3  # an answer seen this often counts as one of the feature's "classes"
MIN_COVERAGE = 0.8  # share of calls whose answer is one of those classes
MAX_CLASSES = 50


def offload_candidates(traffic: Traffic) -> list[Finding]:
    per: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is not None and c["status"] == "ok" and entry["answer_text"]:
            per[c["feature"] or "-"].append((c, normalise(entry["answer_text"])))
    findings = []
    for feature, items in per.items():
        if len(items) < MIN_CALLS:
            continue
        counts = Counter(a for _c, a in items)
        classes = {a for a, n in counts.items() if n >= MIN_REPEATS}
        covered = [c for c, a in items if a in classes]
        coverage = len(covered) / len(items)
        if not classes or len(classes) > MAX_CLASSES or coverage < MIN_COVERAGE:
            continue
        usd = sum(c["cost_usd"] for c in covered if answered(c))
        if usd <= 0:
            continue
        findings.append(Finding(
            "offload", feature,
            f"{coverage:.0%} of the answers of '{feature}' are one of {len(classes)} repeated answers: a small "
            "local model could give them",
            usd, traffic.per_month(usd), "offload",
            f"train a local model on the request log's pairs of '{feature}' (`scrimp offload train`), then "
            f"`- offload: {{features: {{{feature}: {{model: DIR}}}}}}`",
            confidence="estimate",
            evidence={"calls": len(items), "distinct_answers": len(counts), "classes": len(classes),
                      "coverage": coverage, "top_answers": [a[:60] for a, _ in counts.most_common(3)]}))
    return findings
