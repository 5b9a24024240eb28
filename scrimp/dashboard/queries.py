"""What the dashboard shows, read from the ledger's roll-ups (scrimp/ledger/aggregates.py) and, for the calls
behind a chart, from the ledger itself a bounded window at a time. Every query here is bounded: a period of at
most MAX_DAYS, hourly buckets up to HOURLY_UP_TO_S and daily ones beyond, a row cap, and pages of calls that
scan at most SCAN_ROWS ledger rows each."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scrimp.ledger.aggregates import ALL, DIMS, LATENCY_BOUNDS_MS, LATENCY_COLUMNS, MEASURES, route_of
from scrimp.stage import LedgerWriter

MAX_DAYS = 400
HOURLY_UP_TO_S = 14 * 86400  # longer periods are drawn by day
MAX_ROLLUP_ROWS = 200_000  # a period x keys beyond this is cut (and said so)
TOP = 6  # series per breakdown chart; the rest are summed as "other"
SCAN_ROWS = 10_000  # ledger rows one page of calls may read
PAGE = 50
STACKED = ("feature", "model", "tenant", "lever")  # breakdowns drawn over time


class BadQuery(ValueError):
    """A filter the API cannot take (answered with 400)."""


@dataclass
class Filters:
    since: float
    until: float
    tenant: str = ALL
    feature: str = ALL


def _when(value: str, now: float, name: str) -> float:
    m = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if m:
        return now - int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadQuery(f"{name}: expected e.g. 7d, 24h, a unix time or an ISO date, got {value!r}") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def parse_filters(params: dict[str, str], now: float | None = None) -> Filters:
    now = time.time() if now is None else now
    until = _when(params["until"], now, "until") if params.get("until") else now
    since = _when(params.get("since") or "7d", until, "since")
    if since >= until:
        raise BadQuery("since must be before until")
    if until - since > MAX_DAYS * 86400:
        raise BadQuery(f"the period is at most {MAX_DAYS} days")
    return Filters(since, until, params.get("tenant") or ALL, params.get("feature") or ALL)


def _span(f: Filters) -> tuple[str, int]:
    return ("h", 3600) if f.until - f.since <= HOURLY_UP_TO_S else ("d", 86400)


def _quantile(hist: list[float], q: float) -> float | None:
    """A latency quantile from the roll-ups' histogram (linear within a bucket; the open bucket reads as its
    lower bound)."""
    total = sum(hist)
    if not total:
        return None
    target, seen, lower = q * total, 0.0, 0.0
    for count, upper in zip(hist, LATENCY_BOUNDS_MS, strict=True):
        if count and seen + count >= target:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = upper
    return lower


def _figures(m: dict[str, float]) -> dict[str, Any]:
    """The derived figures of a summed roll-up row."""
    calls = m["calls"]
    prompt_in = m["input_tokens"] + m["cache_read_tokens"] + m["cache_write_tokens"]
    hist = [m[c] for c in LATENCY_COLUMNS]
    return {
        **{k: (round(v, 9) if isinstance(v, float) else v) for k, v in m.items() if k not in LATENCY_COLUMNS},
        "cost_per_success_usd": m["cost_usd"] / m["ok"] if m["ok"] else None,
        "exact_hit_rate": m["exact_hits"] / calls if calls else None,
        "semantic_hit_rate": m["semantic_hits"] / calls if calls else None,
        "prompt_cache_read_share": m["cache_read_tokens"] / prompt_in if prompt_in else None,
        "error_rate": (m["errors"] + m["cancelled"]) / calls if calls else None,
        "latency_p50_ms": _quantile(hist, 0.5), "latency_p95_ms": _quantile(hist, 0.95),
        "shadow_agreement": m["score_sum"] / m["scored"] if m["scored"] else None,
        "lever_net_usd": m["saving_usd"] - m["extra_cost_usd"],
    }


def _zero() -> dict[str, float]:
    return dict.fromkeys(MEASURES, 0.0)


def _add(acc: dict[str, float], values: tuple) -> None:
    for m, v in zip(MEASURES, values, strict=True):
        acc[m] += v or 0


def overview(store: LedgerWriter, f: Filters) -> dict[str, Any]:
    """Everything the page draws, in one answer."""
    span, seconds = _span(f)
    lo, hi = int(f.since // seconds), int(f.until // seconds)
    rows = store.query(
        f"SELECT bucket, dim, key, {', '.join(MEASURES)} FROM rollups WHERE tenant = ? AND feature = ? AND span = ? "
        f"AND bucket >= ? AND bucket <= ? LIMIT {MAX_ROLLUP_ROWS + 1}", (f.tenant, f.feature, span, lo, hi))
    truncated = len(rows) > MAX_ROLLUP_ROWS
    buckets = list(range(lo, hi + 1))
    index = {b: i for i, b in enumerate(buckets)}
    per_bucket: dict[str, dict[str, list[dict[str, float]]]] = {}  # dim -> key -> per-bucket sums
    totals: dict[str, dict[str, dict[str, float]]] = {d: {} for d in DIMS}  # dim -> key -> sums over the period
    for bucket, dim, key, *values in rows[:MAX_ROLLUP_ROWS]:
        t = totals.setdefault(dim, {}).setdefault(key, _zero())
        _add(t, values)
        if dim in ("all", *STACKED):
            series = per_bucket.setdefault(dim, {}).setdefault(key, [])
            if not series:
                series.extend(_zero() for _ in buckets)
            _add(series[index[int(bucket)]], values)
    all_series = per_bucket.get("all", {}).get("", [_zero() for _ in buckets])
    overall = totals["all"].get("", _zero())
    out: dict[str, Any] = {
        "filters": {"since": f.since, "until": f.until, "tenant": f.tenant, "feature": f.feature},
        "span": span, "buckets": [b * seconds for b in buckets], "truncated": truncated,
        "totals": _figures(overall),
        "series": {name: [_figures(m)[name] if name in _DERIVED else m[name] for m in all_series]
                   for name in ("calls", "ok", "errors", "cancelled", "cost_usd", "saved_usd", "baseline_usd",
                                "exact_hit_rate", "semantic_hit_rate", "prompt_cache_read_share",
                                "latency_p50_ms", "latency_p95_ms")},
        "breakdowns": {dim: sorted(({"key": k, **_figures(m)} for k, m in keys.items()),
                                   key=lambda r: (-r["cost_usd"], -r["calls"], -r["records"], r["key"]))
                       for dim, keys in totals.items() if dim != "all"},
        "stacked": {dim: _stacked(dim, per_bucket.get(dim, {}), totals.get(dim, {})) for dim in STACKED},
        "choices": _choices(store, f),
    }
    return out


_DERIVED = {"exact_hit_rate", "semantic_hit_rate", "prompt_cache_read_share", "latency_p50_ms", "latency_p95_ms"}


def _stacked(dim: str, series: dict[str, list[dict[str, float]]], totals: dict[str, dict[str, float]]) -> dict:
    """Spend and saving over time for the TOP keys of a breakdown, the rest as "other". For levers, the spend
    is their cost records and the saving their net (saving records - cost records)."""
    def spend(m: dict[str, float]) -> float:
        return m["extra_cost_usd"] if dim == "lever" else m["cost_usd"]

    def saved(m: dict[str, float]) -> float:
        return m["saving_usd"] - m["extra_cost_usd"] if dim == "lever" else m["saved_usd"]

    order = sorted(series, key=lambda k: -(abs(spend(totals[k])) + abs(saved(totals[k]))))
    top, rest = order[:TOP], order[TOP:]
    out = {"keys": top + (["other"] if rest else []), "spend": [], "saved": []}
    for k in top:
        out["spend"].append([round(spend(m), 9) for m in series[k]])
        out["saved"].append([round(saved(m), 9) for m in series[k]])
    if rest:
        n = len(series[rest[0]])
        out["spend"].append([round(sum(spend(series[k][i]) for k in rest), 9) for i in range(n)])
        out["saved"].append([round(sum(saved(series[k][i]) for k in rest), 9) for i in range(n)])
    return out


def _choices(store: LedgerWriter, f: Filters) -> dict[str, list[str]]:
    """The tenants and features of the period, for the filters (the 200 largest by spend)."""
    lo, hi = int(f.since // 86400), int(f.until // 86400)
    out = {}
    for dim, tenant in (("tenant", ALL), ("feature", f.tenant)):
        rows = store.query("SELECT key, SUM(cost_usd), SUM(calls) FROM rollups WHERE tenant = ? AND feature = ? "
                           "AND span = 'd' AND bucket >= ? AND bucket <= ? AND dim = ? GROUP BY key "
                           "ORDER BY SUM(cost_usd) DESC, SUM(calls) DESC LIMIT 200", (tenant, ALL, lo, hi, dim))
        out[dim] = [r[0] for r in rows]
    return out


# -- the calls behind a chart ------------------------------------------------------------------------------------
CALL_COLUMNS = ["ts", "request_id", "tenant", "feature", "requested_model", "served_model", "cache", "status",
                "cost_usd", "baseline_usd", "saved_usd", "saving_stage", "input_tokens", "output_tokens",
                "cache_read_tokens", "latency_ms", "decisions", "error"]


def _name(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def _matches(dim: str, key: str, r: dict[str, Any]) -> bool:
    """The same definitions as the roll-ups', so a chart's count and its calls agree."""
    if dim in ("all", ""):
        return True
    if dim == "feature":
        return _name(r["feature"]) == key
    if dim == "tenant":
        return _name(r["tenant"]) == key
    if dim == "model":
        return _name(r["served_model"] or r["requested_model"]) == key
    if dim == "cache":
        return (r["cache"] or "miss") == key
    if dim == "status":
        return (r["status"] or "ok") == key
    if dim == "lever":
        return key in (r["saving_stage"] or "").split(",")
    if dim == "route":
        return route_of(r["decisions"]) == key
    if dim == "shadow":  # shadow evaluations are of a route's calls
        return (route_of(r["decisions"]) or "").split(":")[0] == key
    raise BadQuery(f"no calls behind dimension {dim!r}")


def calls(store: LedgerWriter, f: Filters, dim: str = "all", key: str = "", after: str | None = None,
          limit: int = PAGE) -> dict[str, Any]:
    """Newest first, keyset-paginated by (ts, request_id): `next` is the cursor of the following page. One page
    reads at most SCAN_ROWS rows of the period; when they hold fewer matches than a page, the page is short and
    `next` still continues from where the scan stopped (so a rare key never makes one request unbounded)."""
    limit = max(1, min(int(limit), 500))
    hi_ts, hi_id = f.until, "\uffff"
    if after:
        ts_text, _, rid = after.partition(",")
        try:
            hi_ts, hi_id = float(ts_text), rid
        except ValueError as exc:
            raise BadQuery("after: expected the cursor of a previous page") from exc
    where = ["ts >= ?", "(ts < ? OR (ts = ? AND request_id < ?))"]
    params: list[Any] = [f.since, hi_ts, hi_ts, hi_id]
    rows = store.query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE {' AND '.join(where)} "
                       f"ORDER BY ts DESC, request_id DESC LIMIT {SCAN_ROWS}", params)
    found, last = [], None
    for values in rows:
        r = dict(zip(CALL_COLUMNS, values, strict=True))
        last = r
        # filters in Python, not SQL: an index on tenant would make the database sort all of a tenant's calls
        if (not f.tenant or _name(r["tenant"]) == f.tenant) and (not f.feature or _name(r["feature"]) == f.feature) \
                and _matches(dim, key, r):
            found.append(r)
            if len(found) == limit:
                break
    more = len(found) == limit or len(rows) == SCAN_ROWS
    cursor = f"{last['ts']!r},{last['request_id']}" if last is not None and more else None
    for r in found:
        r["route"] = route_of(r.pop("decisions"))
    return {"calls": found, "next": cursor, "scanned": len(rows) if len(found) < limit else None}
