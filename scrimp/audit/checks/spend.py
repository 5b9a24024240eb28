"""Features by spend, with cost per successful request and its trend; top prompts by normalised template."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from scrimp.audit.data import Traffic
from scrimp.requestlog.template import normalise, template

SUCCESS = "ok"  # errors, cancelled streams and refused answers (invalid JSON after repair) are cost, no success


def cost_per_success(calls: list[dict[str, Any]]) -> float | None:
    """Spend over successful requests; a router's shadow calls (rows marked `shadow`) are spend, not requests."""
    ok = sum(1 for c in calls if c["status"] == SUCCESS and not c.get("shadow"))
    return sum(c["cost_usd"] for c in calls) / ok if ok else None


def trend(calls: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    """Cost per successful request per day, and the second half of the period against the first."""
    days: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        days[int((c["ts"] - since) // 86400)].append(c)
    span = max(1, math.ceil((until - since) / 86400))
    daily = [cost_per_success(days.get(d, [])) for d in range(span)]
    mid = since + (until - since) / 2
    before, after = cost_per_success([c for c in calls if c["ts"] < mid]), cost_per_success(
        [c for c in calls if c["ts"] >= mid])
    change = (after - before) / before if before and after is not None else None
    return {"daily": daily, "first_half": before, "second_half": after, "change": change}


def features(traffic: Traffic) -> list[dict[str, Any]]:
    out = []
    shadows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in traffic.shadow_calls:
        shadows[c["feature"] or "-"].append(c)
    for feature, calls in traffic.by_feature().items():
        ok = sum(1 for c in calls if c["status"] == SUCCESS)
        spent = calls + shadows.get(feature, [])  # the feature's shadow evaluations are its spend too
        spend = sum(c["cost_usd"] for c in spent)
        hits = sum(1 for c in calls if c["cache"] in ("exact", "semantic"))
        inp = [c["input_tokens"] + c["cache_read_tokens"] + c["cache_write_5m_tokens"] + c["cache_write_1h_tokens"]
               for c in calls if c["cache"] in (None, "miss")]
        read = sum(c["cache_read_tokens"] for c in calls)
        models: dict[str, float] = defaultdict(float)
        for c in calls:
            models[c["served_model"] or c["requested_model"] or "-"] += c["cost_usd"]
        out.append({
            "feature": feature, "calls": len(calls), "succeeded": ok, "failed": len(calls) - ok,
            "cost_usd": spend, "saved_usd": sum(c["saved_usd"] for c in calls),
            "shadow_cost_usd": spend - sum(c["cost_usd"] for c in calls),
            "cost_per_success_usd": cost_per_success(spent),
            "trend": trend(spent, traffic.since, traffic.until),
            "cache_hit_rate": hits / len(calls) if calls else 0.0,
            "prompt_cache_read_share": read / sum(inp) if inp and sum(inp) else 0.0,
            "avg_input_tokens": sum(inp) / len(inp) if inp else 0.0,
            "avg_output_tokens": sum(c["output_tokens"] for c in calls) / len(calls) if calls else 0.0,
            "streamed_share": sum(1 for c in calls if c["stream"]) / len(calls) if calls else 0.0,
            "models": dict(sorted(models.items(), key=lambda kv: -kv[1])),
        })
    return sorted(out, key=lambda r: -r["cost_usd"])


def prompts(traffic: Traffic, top: int = 20) -> list[dict[str, Any]]:
    """Logged calls grouped by (feature, template of the final user turn), by spend, each marked cacheable or
    not: `exact` when identical deterministic requests repeat, `semantic` when the same question comes in other
    words (case, spacing, punctuation), `sampled` when repeats are blocked by temperature, else `no`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is not None:
            groups[(c["feature"] or "-", template(entry["prompt_text"] or ""))].append(c)
    out = []
    for (feature, tmpl), calls in groups.items():
        entries = [traffic.logged[c["request_id"]] for c in calls]
        raw = [e["prompt_text"] or "" for e in entries]
        exact_keys = [e["key"] for e in entries]
        deterministic = [e["deterministic"] for e in entries]
        repeats = len(exact_keys) - len(set(exact_keys))
        if repeats and all(deterministic):
            cacheable = "exact"
        elif repeats:
            cacheable = "sampled"
        elif len({normalise(p) for p in raw}) < len(set(raw)):
            cacheable = "semantic"
        else:
            cacheable = "no"
        out.append({"feature": feature, "template": tmpl, "calls": len(calls), "distinct_prompts": len(set(raw)),
                    "cost_usd": sum(c["cost_usd"] for c in calls), "cacheable": cacheable,
                    "example": raw[-1][:200]})
    return sorted(out, key=lambda r: -r["cost_usd"])[:top]
