"""A feature's logged traffic as training data: the request log's prompts and the answers the LLM gave them
(scrimp.requestlog, same database as the ledger), newest first.

Left out: calls the offload stage answered itself (learning from its own answers would freeze its mistakes in),
answers a semantic-cache hit gave (another question's answer), and failed or empty answers."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from scrimp.offload.data import Pairs


def open_log(ledger_section: Any) -> Any:
    from scrimp.requestlog.store import RequestLogStore

    return RequestLogStore.from_ledger_config(ledger_section)


def _offloaded(store: Any, feature: str | None, since: float | None) -> set[str]:
    sql = "SELECT request_id FROM calls WHERE provider = ?"
    params: list[Any] = ["offload"]
    if feature is not None:
        sql += " AND feature = ?"
        params.append(feature)
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    try:
        return {r for (r,) in store.db.execute(sql, params, "all")}
    except Exception:  # noqa: BLE001 - a log without a ledger table beside it has no offloaded calls either
        return set()


def _usable(row: dict[str, Any], skip: set[str]) -> bool:
    return (row["status"] == "ok" and bool(row["answer_text"]) and row["cache"] != "semantic"
            and row["request_id"] not in skip)


def pairs(store: Any, feature: str, *, tenant: str | None = None, since: float | None = None,
          limit: int | None = None) -> Pairs:
    """The newest `limit` usable (prompt, answer) pairs of a feature."""
    skip = _offloaded(store, feature, since)
    prompts, answers = [], []
    for row in store.iter_entries(feature=feature, tenant=tenant, since=since, bodies=False):
        if not _usable(row, skip):
            continue
        prompts.append(row["prompt_text"] or "")
        answers.append(row["answer_text"])
        if limit is not None and len(prompts) >= limit:
            break
    return Pairs(prompts, answers)


@dataclass
class FeatureTraffic:
    feature: str
    calls: int  # logged calls in the period
    pairs: Pairs  # usable pairs, newest first (at most the sample size)
    answers: Counter[str]


def by_feature(store: Any, *, since: float | None = None, tenant: str | None = None,
               sample: int = 5000) -> dict[str, FeatureTraffic]:
    skip = _offloaded(store, None, since)
    out: dict[str, FeatureTraffic] = {}
    counts: dict[str, int] = defaultdict(int)
    for row in store.iter_entries(tenant=tenant, since=since, bodies=False):
        feature = row["feature"]
        if not feature:
            continue
        counts[feature] += 1
        f = out.get(feature)
        if f is None:
            f = out[feature] = FeatureTraffic(feature, 0, Pairs([], []), Counter())
        if _usable(row, skip) and len(f.pairs) < sample:
            f.pairs.prompts.append(row["prompt_text"] or "")
            f.pairs.answers.append(row["answer_text"])
    for feature, f in out.items():
        f.calls = counts[feature]
    return out


def spend_by_feature(store: Any, since: float | None, tenant: str | None = None) -> dict[str, tuple[int, float]]:
    """feature -> (calls answered by a provider, their cost) from the ledger."""
    sql = "SELECT feature, COUNT(*), SUM(cost_usd) FROM calls WHERE provider IS NOT NULL AND provider NOT IN " \
          "('cache', 'offload') AND status = 'ok'"
    params: list[Any] = []
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    if tenant is not None:
        sql += " AND tenant = ?"
        params.append(tenant)
    try:
        rows = store.db.execute(sql + " GROUP BY feature", params, "all")
    except Exception:  # noqa: BLE001 - no ledger table beside the log
        return {}
    return {f: (int(n), float(usd or 0)) for f, n, usd in rows if f}


def since_days(days: float | None) -> float | None:
    return None if days is None else time.time() - days * 86_400
