"""The audit: every check over one period, as one report (a dict, rendered as text, JSON or HTML)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scrimp.audit.checks import batch, caching, models, offload, spend, tokens
from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding

SECTIONS = {  # check -> the checklist section it belongs to
    "cacheable_prompts": "cache", "temperature": "cache", "volatile_prefix": "cache",
    "cheaper_model": "models", "untested_model": "models", "trimmable_input": "input",
    "no_max_tokens": "output", "batchable": "batch", "offload": "offload",
}


def audit(traffic: Traffic, model_tiers: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """`model_tiers`: model -> (provider, tier) of the configured models (default: the simulator's line-up), for
    the cheaper model each feature could move to."""
    findings: list[Finding] = []
    notes: list[str] = []
    trimmable: dict[str, float] = {}  # feature -> share of input a trimmer would drop (logged calls)
    uncapped: dict[str, float] = {}  # feature -> share of calls without max_tokens (logged calls)
    if traffic.request_log:
        findings += caching.repeated_requests(traffic)
        findings += caching.volatile_prefixes(traffic)
        findings += tokens.trimmable_input(traffic, trimmable)
        findings += tokens.uncapped_output(traffic, uncapped)
        findings += offload.offload_candidates(traffic)
        logged = sum(1 for c in traffic.calls if c["request_id"] in traffic.logged)
        if logged < len(traffic.calls):
            notes.append(f"{logged} of {len(traffic.calls)} calls are in the request log: prompt-level checks "
                         "(caching, trimming, max_tokens, offload) cover those only")
    else:
        notes.append("no request log in this ledger's database: prompt-level checks (top prompts, cacheable "
                     "requests, volatile prefixes, trimming, max_tokens, offload) were skipped; turn it on with "
                     "`- request_log: {features: ['*']}` (docs/request-log.md)")
    if traffic.calls and traffic.covered_days < 1:
        notes.append(f"the ledger covers {24 * traffic.covered_days:.1f} hours of this period: monthly figures "
                     "count it as one day of traffic, and when features run (batch eligibility) is not judged yet")
    flagged = {f.feature for f in findings if f.check == "volatile_prefix"}
    findings += [b for b in caching.prompt_cache_busters(traffic) if b.feature not in flagged]
    findings += models.model_moves(traffic, models.cheaper_models(model_tiers))
    findings += batch.batchable(traffic)
    findings.sort(key=lambda f: (f.confidence == "untested", -f.saving_usd))
    features = spend.features(traffic)
    for row in features:
        row["trimmable_share"] = trimmable.get(row["feature"])
        row["no_max_tokens_share"] = uncapped.get(row["feature"])
    shadow_cost = sum(c["cost_usd"] for c in traffic.shadow_calls)
    total_cost = sum(c["cost_usd"] for c in traffic.calls) + shadow_cost  # shadow evaluations are spend too
    ok = sum(1 for c in traffic.calls if c["status"] == spend.SUCCESS)
    potential = _potential(findings, {f["feature"]: f["cost_usd"] for f in features})
    return {
        "period": {"since": _iso(traffic.since), "until": _iso(traffic.until), "days": round(traffic.days, 3)},
        "totals": {"calls": len(traffic.calls), "succeeded": ok, "cost_usd": total_cost,
                   "shadow_cost_usd": shadow_cost, "saved_usd": sum(c["saved_usd"] for c in traffic.calls),
                   "cost_per_success_usd": total_cost / ok if ok else None,
                   "trend": spend.trend(traffic.calls + traffic.shadow_calls, traffic.since, traffic.until),
                   "potential_saving_usd": potential,
                   "potential_saving_month_usd": traffic.per_month(potential)},
        "features": features,
        "prompts": spend.prompts(traffic) if traffic.request_log else [],
        "findings": [dict(f.as_dict(), section=SECTIONS.get(f.check, "other")) for f in findings],
        "notes": notes,
    }


def _potential(findings: list[Finding], spend_by_feature: dict[str, float]) -> float:
    """The findings' savings added up, untested model moves aside, and never more than a feature's spend: the
    levers overlap (a cached FAQ cannot also be offloaded), so each feature counts at most once."""
    per: dict[str, float] = {}
    for f in findings:
        if f.confidence != "untested":
            per[f.feature] = per.get(f.feature, 0.0) + f.saving_usd
    return sum(min(usd, spend_by_feature.get(feature, usd)) for feature, usd in per.items())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
