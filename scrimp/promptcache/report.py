"""Per-feature prompt-cache figures from the ledger: hit ratio, write premium, read savings, net, busters."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from scrimp import pricing
from scrimp.canonical import Usage
from scrimp.ledger.store import LedgerStore


def _price(model: str, provider: str | None, usage: Usage) -> float:
    try:
        return pricing.cost(model, provider, usage)
    except pricing.UnknownPrice:
        return 0.0


def prompt_cache_report(store: LedgerStore, since: float | None = None) -> list[dict[str, Any]]:
    where, params = ("AND ts >= ?", [since]) if since is not None else ("", [])
    rows = store.query(
        "SELECT COALESCE(feature, '-'), served_model, provider, COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens) FROM calls "
        f"WHERE provider IN ('openai', 'anthropic') {where} GROUP BY 1, 2, 3", params)
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "calls": 0, "input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "cacheable_tokens": 0,
        "write_premium_usd": 0.0, "read_savings_usd": 0.0, "busters": {}})
    for feature, model, provider, calls, inp, read, w5, w1 in rows:
        inp, read, w5, w1 = int(inp or 0), int(read or 0), int(w5 or 0), int(w1 or 0)
        f = out[feature]
        f["calls"] += int(calls)
        f["input_tokens"] += inp + read + w5 + w1
        f["cache_read_tokens"] += read
        f["cache_write_tokens"] += w5 + w1
        # Cacheable: what sits behind breakpoints (Anthropic: read + written); OpenAI caches any long prefix.
        f["cacheable_tokens"] += read + w5 + w1 if provider == "anthropic" else read + inp
        f["write_premium_usd"] += (_price(model, provider, Usage(cache_write_5m=w5, cache_write_1h=w1))
                                   - _price(model, provider, Usage(input=w5 + w1)))
        f["read_savings_usd"] += _price(model, provider, Usage(input=read)) - _price(model, provider,
                                                                                   Usage(cache_read=read))
    for feature, model, provider, decisions in store.query(
            "SELECT COALESCE(feature, '-'), served_model, provider, decisions FROM calls "
            f"WHERE decisions LIKE ? {where}", ["%cache_buster%", *params]):
        finding = orjson.loads(decisions).get("cache_buster")
        if not finding:
            continue
        b = out[feature]["busters"].setdefault(finding["kind"], {"count": 0, "tokens_lost": 0, "cost_usd": 0.0,
                                                                  "example": finding["example"]})
        b["count"] += 1
        b["tokens_lost"] += finding["tokens_lost"]
        lost = Usage(input=finding["tokens_lost"])
        b["cost_usd"] += _price(model, provider, lost) - _price(model, provider, Usage(cache_read=lost.input))
    result = []
    for feature, f in sorted(out.items()):
        f["hit_ratio"] = f["cache_read_tokens"] / f["cacheable_tokens"] if f["cacheable_tokens"] else 0.0
        f["net_saving_usd"] = f["read_savings_usd"] - f["write_premium_usd"]
        result.append({"feature": feature, **f})
    return result
