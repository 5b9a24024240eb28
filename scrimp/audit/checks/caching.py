"""Cache findings: repeated requests answered by a provider each time (an exact cache would have served
them), repeats a cache refused because they were sampled (temperature), and volatile values at the start of a
long system prompt that keep the provider's prompt cache from ever being read."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Any

from scrimp.audit.data import Traffic
from scrimp.audit.findings import Finding, answered, price
from scrimp.canonical import Usage
from scrimp.requestlog.template import volatile_parts
from scrimp.tokens import count_tokens

MIN_PREFIX_TOKENS = 1024  # the shortest prefix either provider caches
_DIGITS = re.compile(r"\d+")


def repeated_requests(traffic: Traffic) -> list[Finding]:
    """Identical requests after their first occurrence that a provider answered again."""
    per_feature: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is not None and c["status"] == "ok":
            per_feature[c["feature"] or "-"][entry["key"]].append(c)
    findings = []
    exact_on = "exact_cache" in traffic.stages
    for feature, groups in per_feature.items():
        repeat_det = [c for calls in groups.values() if traffic.logged[calls[0]["request_id"]]["deterministic"]
                      for c in calls[1:] if answered(c)]
        repeat_sampled = [c for calls in groups.values()
                          if not traffic.logged[calls[0]["request_id"]]["deterministic"]
                          for c in calls[1:] if answered(c)]
        calls_total = sum(len(v) for v in groups.values())
        if repeat_det and not exact_on:
            usd = sum(c["cost_usd"] for c in repeat_det)
            findings.append(Finding(
                "cacheable_prompts", feature,
                f"{len(repeat_det)} of {calls_total} logged calls of '{feature}' repeat an earlier request word for "
                f"word (temperature 0) and were paid for again",
                usd, traffic.per_month(usd), "exact_cache",
                "stages: add `- exact_cache: {backend: sqlite, path: scrimp-cache.db}` after the ledger",
                evidence={"repeats": len(repeat_det), "distinct_requests": len(groups), "calls": calls_total,
                          "examples": _examples(traffic, groups)}))
        if repeat_sampled:
            usd = sum(c["cost_usd"] for c in repeat_sampled)
            findings.append(Finding(
                "temperature", feature,
                f"{len(repeat_sampled)} repeated requests of '{feature}' are sampled (temperature > 0), so no "
                "cache may reuse an answer",
                usd, traffic.per_month(usd), "exact_cache",
                f"send temperature 0 for '{feature}', or `- exact_cache: {{features: {{{feature}: "
                "{any_temperature: true}}}` (one answer is then served every time)",
                confidence="estimate",
                evidence={"repeats": len(repeat_sampled), "temperatures": sorted({
                    traffic.logged[c["request_id"]]["temperature"] for c in repeat_sampled},
                    key=str)}))
    return findings


def _examples(traffic: Traffic, groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    top = sorted(groups.values(), key=len, reverse=True)[:3]
    return [f"{len(calls)}x {(traffic.logged[calls[0]['request_id']]['prompt_text'] or '')[:80]}" for calls in top]


def volatile_prefixes(traffic: Traffic) -> list[Finding]:
    """Long system prompts that share one template but differ call to call in a date, time, id or number:
    the provider caches prefixes, and a value that changes at the start breaks every read after it."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for c in traffic.calls:
        entry = traffic.logged.get(c["request_id"])
        if entry is None or not answered(c):
            continue
        system = entry["system"]
        if system:
            # grouped with the digits masked (dates, times, counters, ids): cheap on long prompts, where the full
            # template's rules would cost a regex pass each
            groups[(c["feature"] or "-", _DIGITS.sub("0", system))].append((c, system))
    findings = []
    for (feature, _tmpl), items in groups.items():
        texts = [s for _c, s in items]
        distinct = len(set(texts))
        if len(items) < 5 or distinct < 0.5 * len(items):
            continue
        tokens = count_tokens(texts[-1])
        if tokens < MIN_PREFIX_TOKENS:
            continue
        # what varies, read around where the texts first differ (the cache is read up to there)
        sample = list(dict.fromkeys(texts))[:50]
        cut = len(os.path.commonprefix(sample))
        parts = volatile_parts([t[max(0, cut - 60):cut + 200] for t in sample])
        if not parts:
            continue
        # Moved out of the prefix, the rest would be read from cache on every call but the first (at the cache
        # read rate instead of the input rate), less one cache write (priced as a 5-minute write premium).
        usd = 0.0
        for i, (c, _s) in enumerate(items):
            already = c["cache_read_tokens"]
            n = max(0, tokens - already)
            if i == 0 or not n:
                continue
            usd += price(c["served_model"], c["provider"], Usage(input=n)) - price(
                c["served_model"], c["provider"], Usage(cache_read=n))
        first = items[0][0]
        usd -= price(first["served_model"], first["provider"], Usage(cache_write_5m=tokens)) - price(
            first["served_model"], first["provider"], Usage(input=tokens))
        if usd <= 0:
            continue
        findings.append(Finding(
            "volatile_prefix", feature,
            f"the {tokens}-token system prompt of '{feature}' changes on {distinct} of {len(items)} calls "
            f"({', '.join(parts)} near its start), so the provider's prompt cache is never read",
            usd, traffic.per_month(usd), "prompt_cache",
            "`- prompt_cache: {move_volatile: true}` (moves timestamp / id lines out of the cached prefix), or put "
            "the changing value in the last user turn",
            evidence={"system_tokens": tokens, "distinct_system_prompts": distinct, "calls": len(items),
                      "volatile": parts, "example": texts[-1][:160],
                      "cache_read_tokens": sum(c["cache_read_tokens"] for c, _ in items)}))
    return findings


def prompt_cache_busters(traffic: Traffic) -> list[Finding]:
    """What the prompt-cache planner itself flagged on calls (decisions.cache_buster), when it is on."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "usd": 0.0, "kinds": set()})
    for c in traffic.calls:
        found = c["decisions"].get("cache_buster")
        if not found:
            continue
        lost = Usage(input=int(found.get("tokens_lost", 0)))
        f = per[c["feature"] or "-"]
        f["count"] += 1
        f["kinds"].add(found.get("kind", "?"))
        f["usd"] += price(c["served_model"], c["provider"], lost) - price(
            c["served_model"], c["provider"], Usage(cache_read=lost.input))
    return [Finding("volatile_prefix", feature,
                    f"the prompt-cache planner found cache busters in {f['count']} calls of '{feature}' "
                    f"({', '.join(sorted(f['kinds']))})",
                    f["usd"], traffic.per_month(f["usd"]), "prompt_cache", "`- prompt_cache: {move_volatile: true}`",
                    evidence={"calls": f["count"], "kinds": sorted(f["kinds"])})
            for feature, f in per.items() if f["usd"] > 0]



