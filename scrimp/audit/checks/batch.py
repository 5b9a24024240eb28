"""Batch-eligible spend: features nobody waits on (never streamed) whose calls come in bursts or off-hours,
which the providers' Batch APIs would bill at half price."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding, answered
from scrimp.pricing import BATCH_DISCOUNT

OFF_HOURS = set(range(7)) | {22, 23}  # UTC
MIN_CALLS = 20
BURST_SHARE = 0.6  # this share of the calls in the 3 busiest hours of the day: a scheduled job


def batchable(traffic: Traffic) -> list[Finding]:
    findings = []
    for feature, calls in traffic.by_feature().items():
        if len(calls) < MIN_CALLS or any(c["stream"] for c in calls):
            continue
        if calls[-1]["ts"] - calls[0]["ts"] < 86400:
            continue  # less than a day of its traffic: when it runs says nothing yet
        if any(c["decisions"].get("batch") or c["decisions"].get("service_tier") for c in calls):
            continue  # already on the batch lane / flex tier
        hours = Counter(datetime.fromtimestamp(c["ts"], UTC).hour for c in calls)
        off = sum(n for h, n in hours.items() if h in OFF_HOURS) / len(calls)
        burst = sum(n for _h, n in hours.most_common(3)) / len(calls)
        if off < 0.5 and burst < BURST_SHARE:
            continue
        paid = [c for c in calls if answered(c)]
        spend = sum(c["cost_usd"] for c in paid)
        usd = spend * BATCH_DISCOUNT
        if usd <= 0:
            continue
        why = []
        if off >= 0.5:
            why.append(f"{off:.0%} off-hours (22:00-07:00 UTC)")
        if burst >= BURST_SHARE:
            why.append(f"{burst:.0%} in its 3 busiest hours")
        findings.append(Finding(
            "batchable", feature,
            f"'{feature}' is never streamed and runs {' and '.join(why)}: batch-eligible, billed at half price "
            "through the providers' Batch APIs",
            usd, traffic.per_month(usd), "batch",
            f"`- batch: {{features: {{{feature}: {{defer: \"1h\"}}}}}}` (or send `x-scrimp-defer: 1h`)",
            evidence={"calls": len(calls), "spend_usd": spend, "off_hours_share": off, "top3_hours_share": burst,
                      "hours": dict(sorted(hours.items()))}))
    return findings
