"""Token findings: input that a trimmer would drop (old turns of long conversations, the bulk of long tool
outputs) and answers with no `max_tokens` cap."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding, answered, price
from scrimp.audit.logged import KEEP_MESSAGES, TOOL_OUTPUT_KEEP
from scrimp.canonical import Usage

MIN_SHARE = 0.2  # below this share of input, trimming is not worth a finding


def trimmable_input(traffic: Traffic, shares: dict[str, float] | None = None) -> list[Finding]:
    """Findings for features with much trimmable input; `shares` (if given) gets every logged feature's
    trimmable share of input, for the features table."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"cut": 0, "total": 0, "input": 0, "usd": 0.0, "calls": 0})
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is None or not answered(c):
            continue
        cut, total = entry["trimmable"]
        f = per[c["feature"] or "-"]
        f["calls"] += 1
        f["cut"] += cut
        f["total"] += total
        f["input"] += c["input_tokens"] + c["cache_read_tokens"]
        # what the provider would no longer bill: the cut tokens in the call's own mix of uncached input and
        # prompt-cache reads (trimming what was read from cache saves only the read price)
        full = c["input_tokens"] + c["cache_read_tokens"] + c["cache_write_5m_tokens"] + c["cache_write_1h_tokens"]
        read = round(cut * c["cache_read_tokens"] / full) if full else 0
        f["usd"] += price(c["served_model"], c["provider"], Usage(input=cut - read, cache_read=read))
    findings = []
    for feature, f in per.items():
        share = f["cut"] / f["input"] if f["input"] else 0.0
        if shares is not None:
            shares[feature] = min(share, 1.0)
        if share < MIN_SHARE or f["usd"] <= 0:
            continue
        findings.append(Finding(
            "trimmable_input", feature,
            f"{share:.0%} of the input of '{feature}' is old conversation turns or the bulk of long tool outputs "
            f"(avg {f['input'] / f['calls']:.0f} input tokens per call)",
            f["usd"], traffic.per_month(f["usd"]), "trim",
            f"`- trim: {{features: {{{feature}: {{history: {{keep_recent: {KEEP_MESSAGES}}}, "
            f"tool_output: {{min_tokens: {TOOL_OUTPUT_KEEP}}}}}}}}}`",
            confidence="estimate",
            evidence={"calls": f["calls"], "trimmable_tokens": f["cut"], "input_tokens": f["input"], "share": share}))
    return findings


def uncapped_output(traffic: Traffic, shares: dict[str, float] | None = None) -> list[Finding]:
    """Calls sent without max_tokens: what capping at the feature's 95th percentile answer length would have
    cut from the longest answers. `shares` (if given) gets each logged feature's share of calls without it."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    logged_per: dict[str, int] = defaultdict(int)
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is None or not answered(c):
            continue
        logged_per[c["feature"] or "-"] += 1
        if entry["max_tokens"] is None:
            per[c["feature"] or "-"].append(c)
    if shares is not None:
        shares.update({feature: len(per.get(feature, [])) / n for feature, n in logged_per.items()})
    findings = []
    for feature, calls in per.items():
        if len(calls) < 0.5 * logged_per[feature]:
            continue  # mostly capped: a few stray calls are not a finding
        outs = sorted(c["output_tokens"] for c in calls)
        cap = outs[min(len(outs) - 1, int(0.95 * len(outs)))]
        usd = sum(price(c["served_model"], c["provider"], Usage(output=c["output_tokens"] - cap))
                  for c in calls if c["output_tokens"] > cap)
        findings.append(Finding(
            "no_max_tokens", feature,
            f"{len(calls)} of {logged_per[feature]} calls of '{feature}' set no max_tokens (answers average "
            f"{sum(outs) / len(outs):.0f} tokens, longest {outs[-1]})",
            usd, traffic.per_month(usd), "output_cap",
            f"`- output_cap: {{features: {{{feature}: {{quantile: 0.95}}}}}}` (learns the cap from its answers; "
            f"95th percentile now {cap} tokens), or send max_tokens on '{feature}' calls",
            confidence="estimate",
            evidence={"calls": len(calls), "avg_output_tokens": sum(outs) / len(outs), "p95_output_tokens": cap,
                      "max_output_tokens": outs[-1],
                      "output_usd": sum(price(c["served_model"], c["provider"], Usage(output=c["output_tokens"]))
                                        for c in calls)}))
    return findings
