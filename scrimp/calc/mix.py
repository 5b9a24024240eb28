"""The ledger's real mix over a period, for the calculators: tokens and spend a month (uncached input, cached
input, output), calls, the busiest hour's token rate, the hours a day with traffic, and the batch-eligible
share of spend (the audit's batch check)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from scrimp.audit.checks.batch import batchable
from scrimp.audit.data import Traffic
from scrimp.audit.findings import answered


def ledger_mix(traffic: Traffic, feature: str | None = None) -> dict[str, Any]:
    calls = [c for c in traffic.calls if feature is None or (c["feature"] or "-") == feature]
    paid = [c for c in calls if answered(c)]  # a provider billed them (no cache hit, no offloaded answer)
    month = 30.0 / traffic.days
    inp = sum(c["input_tokens"] + c["cache_write_5m_tokens"] + c["cache_write_1h_tokens"] for c in paid)
    cached = sum(c["cache_read_tokens"] for c in paid)
    out = sum(c["output_tokens"] for c in paid)
    spend = sum(c["cost_usd"] for c in calls)
    tokens = inp + cached + out
    per_hour: Counter[int] = Counter()
    hours_of_day: Counter[int] = Counter()
    for c in paid:
        per_hour[int(c["ts"] // 3600)] += (c["input_tokens"] + c["cache_read_tokens"] + c["output_tokens"])
        hours_of_day[datetime.fromtimestamp(c["ts"], UTC).hour] += 1
    active_hours = sum(1 for n in hours_of_day.values() if n >= 0.02 * len(paid)) if paid else 0
    batch = [f for f in batchable(traffic) if feature is None or f.feature == feature]
    batch_spend = sum(f.evidence["spend_usd"] for f in batch)
    return {
        "feature": feature, "days": traffic.days, "calls_per_month": len(calls) * month,
        "paid_calls_per_month": len(paid) * month,
        "input_tokens_per_month": inp * month, "cached_tokens_per_month": cached * month,
        "output_tokens_per_month": out * month, "tokens_per_month": tokens * month,
        "spend_usd_per_month": spend * month,
        "usd_per_token": spend / tokens if tokens else 0.0,
        "input_share": (inp + cached) / tokens if tokens else 0.0,
        "cached_share_of_input": cached / (inp + cached) if inp + cached else 0.0,
        "avg_input_tokens": inp / len(paid) if paid else 0.0, "avg_cached_tokens": cached / len(paid) if paid else 0.0,
        "avg_output_tokens": out / len(paid) if paid else 0.0,
        "peak_tokens_per_s": max(per_hour.values(), default=0) / 3600,
        "active_hours_per_day": active_hours,
        "batchable_spend_share": batch_spend / spend if spend else 0.0,
        "models": dict(Counter(c["served_model"] for c in paid if c["served_model"]).most_common(5)),
    }
