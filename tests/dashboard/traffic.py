"""Random ledger traffic for the dashboard tests: rows shaped as the ledger stage writes them (calls with their
saving / cost records, shadow evaluations, budget events), spread over the past days."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from scrimp.ledger.schema import NAMES

TENANTS = ["acme", "globex", "initech"]
FEATURES = ["support", "search", "summary", None]
MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.0), ("claude-haiku-4-5", 1.0, 5.0)]
LEVERS = ["exact_cache", "semantic_cache", "router", "prompt_cache"]


def write_traffic(store: Any, n: int, *, seed: int = 7, days: float = 3.0, now: float | None = None) -> None:
    rng = random.Random(seed)
    now = time.time() if now is None else now
    for i in range(n):
        ts = now - rng.random() * days * 86400
        tenant, feature = rng.choice(TENANTS), rng.choice(FEATURES)
        model, pin, pout = rng.choice(MODELS)
        inp, out, cread = rng.randint(10, 3000), rng.randint(1, 800), rng.choice([0, 0, 1024, 2048])
        cost = (inp * pin + out * pout + cread * pin / 10) / 1e6
        cache = rng.choices(["miss", "exact", "semantic"], [6, 2, 1])[0]
        status = rng.choices(["ok", "error", "client_cancelled"], [12, 1, 1])[0]
        decisions: dict[str, Any] = {"cache": cache}
        if feature == "support":
            decisions["route"] = "support:" + rng.choice(["cheap", "strong"])
        savings = []
        if cache != "miss":
            savings.append(("saving", cache + "_cache", cost))
            cost = 0.0
        elif rng.random() < 0.3:
            savings.append(("saving", rng.choice(["router", "prompt_cache"]), round(rng.random() * 0.01, 6)))
        if rng.random() < 0.1:
            savings.append(("cost", "router", round(rng.random() * 0.002, 6)))
        extra = sum(u for k, _, u in savings if k == "cost")
        saved = sum(u for k, _, u in savings if k == "saving")
        levers = sorted({lv for k, lv, _ in savings if k == "saving"})
        rid = f"req-{seed}-{i}"
        row = dict.fromkeys(NAMES)
        row.update(ts=ts, request_id=rid, tenant=tenant, user_id="u", feature=feature, inbound="openai",
                   requested_model=model, served_model=None if status == "error" else model,
                   provider="openai", input_tokens=inp, output_tokens=out, cache_read_tokens=cread,
                   cache_write_5m_tokens=rng.choice([0, 0, 512]), cache_write_1h_tokens=0, reasoning_tokens=0,
                   cost_usd=cost + extra, baseline_usd=cost + saved, saved_usd=saved - extra,
                   saving_stage=",".join(levers) or None, cache=cache,
                   decisions=orjson.dumps(decisions).decode(), latency_ms=rng.expovariate(1 / 900),
                   ttft_ms=None, stream=0, status=status, error="boom" if status == "error" else None)
        store.write(row)
        for kind, lever, usd in savings:
            store.write({"ts": ts, "request_id": rid, "tenant": tenant, "feature": feature, "kind": kind,
                         "lever": lever, "usd": usd, "detail": "test"}, table="savings")
        if "route" in decisions and rng.random() < 0.3:
            store.write({"ts": ts, "request_id": rid, "route": "support", "tenant": tenant, "feature": feature,
                         "prompt": "p", "cheap_model": "gpt-4o-mini", "strong_model": "gpt-4o", "served": "cheap",
                         "score": rng.random(), "scorer": "embedding", "cost_usd": 0.001}, table="shadow")
        if rng.random() < 0.02:
            store.write({"ts": ts, "kind": rng.choice(["budget_downgrade", "budget_block"]), "route": None,
                         "tenant": tenant, "feature": feature,
                         "detail": orjson.dumps({"budget": "monthly", "request_id": rid}).decode()}, table="events")
