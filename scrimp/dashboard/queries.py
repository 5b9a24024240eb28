"""What the dashboard shows, read from the ledger's roll-ups (scrimp/ledger/aggregates.py) and, for the calls
behind a chart, from the ledger itself a bounded window at a time. Every query here is bounded: a period of at
most MAX_DAYS, hourly buckets up to HOURLY_UP_TO_S and daily ones beyond, a row cap, and pages of calls that
scan at most SCAN_ROWS ledger rows each. The top prompts by spend come from the request log, read with a bound of
their own (scrimp/dashboard/prompts.py)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scrimp.dashboard import prompts
from scrimp.ledger.aggregates import ALL, DIMS, LATENCY_BOUNDS_MS, LATENCY_COLUMNS, MEASURES, route_of
from scrimp.stage import LedgerWriter

MAX_DAYS = 400
HOURLY_UP_TO_S = 14 * 86400  # longer periods are drawn by day
MAX_KEYS = 20_000  # (dimension, key) pairs read for a period; beyond, the answer says it was cut
MAX_LISTED = 100  # rows per breakdown in the answer (the largest by spend)
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


def overview(store: LedgerWriter, f: Filters) -> dict[str, Any]:
    """Everything the page draws, in one answer, from three aggregate queries over one index range of the
    roll-ups (the filter's scope, the period's buckets): totals per dimension and key, the overall series,
    and the top keys' series of the stacked breakdowns."""
    span, seconds = _span(f)
    lo, hi = int(f.since // seconds), int(f.until // seconds)
    scope = "tenant = ? AND feature = ? AND span = ? AND bucket >= ? AND bucket <= ?"
    args = (f.tenant, f.feature, span, lo, hi)
    sums = ", ".join(f"SUM({m})" for m in MEASURES)
    totals: dict[str, dict[str, dict[str, float]]] = {d: {} for d in DIMS}
    rows = store.query(f"SELECT dim, key, {sums} FROM rollups WHERE {scope} GROUP BY dim, key "
                       f"LIMIT {MAX_KEYS + 1}", args)
    truncated = len(rows) > MAX_KEYS
    for dim, key, *values in rows[:MAX_KEYS]:
        totals.setdefault(dim, {})[key] = _sums(values)
    buckets = list(range(lo, hi + 1))
    index = {b: i for i, b in enumerate(buckets)}
    all_series = [_zero() for _ in buckets]
    for bucket, *values in store.query(f"SELECT bucket, {', '.join(MEASURES)} FROM rollups WHERE {scope} "
                                       "AND dim = 'all' AND key = ''", args):
        all_series[index[int(bucket)]] = _sums(values)
    overall = totals["all"].get("", _zero())
    # a filtered tenant / feature has no rows of its own dimension in its scope: it is the whole of it
    for dim, chosen in (("tenant", f.tenant), ("feature", f.feature)):
        if chosen and not totals.get(dim) and overall["calls"]:
            totals[dim] = {chosen: overall}
    stacked = _stacked(store, scope, args, totals, index)
    for dim, chosen in (("tenant", f.tenant), ("feature", f.feature)):
        if chosen and not stacked[dim]["keys"] and overall["calls"]:
            stacked[dim] = {"keys": [chosen], "spend": [[round(m["cost_usd"], 9) for m in all_series]],
                            "saved": [[round(m["saved_usd"], 9) for m in all_series]]}
    breakdowns = {dim: sorted(({"key": k, **_figures(m)} for k, m in keys.items()),
                              key=lambda r: (-r["cost_usd"], -r["calls"], -r["records"], r["key"]))[:MAX_LISTED]
                  for dim, keys in totals.items() if dim != "all"}
    return {
        "filters": {"since": f.since, "until": f.until, "tenant": f.tenant, "feature": f.feature},
        "span": span, "buckets": [b * seconds for b in buckets], "truncated": truncated,
        "totals": _figures(overall),
        "series": {name: [_figures(m)[name] if name in _DERIVED else m[name] for m in all_series]
                   for name in ("calls", "ok", "errors", "cancelled", "cost_usd", "saved_usd", "baseline_usd",
                                "exact_hit_rate", "semantic_hit_rate", "prompt_cache_read_share",
                                "latency_p50_ms", "latency_p95_ms")},
        "breakdowns": breakdowns,
        "stacked": stacked,
        "choices": _choices(store, f),
        "prompts": prompts.top_prompts(store, f.since, f.until, f.tenant, f.feature, overall["cost_usd"],
                                       [r["key"] for r in breakdowns.get("feature", []) if r["cost_usd"] > 0]),
    }


_DERIVED = {"exact_hit_rate", "semantic_hit_rate", "prompt_cache_read_share", "latency_p50_ms", "latency_p95_ms"}


def _sums(values: list[Any]) -> dict[str, float]:
    return {m: float(v or 0) for m, v in zip(MEASURES, values, strict=True)}


def _stacked(store: LedgerWriter, scope: str, args: tuple, totals: dict[str, dict[str, dict[str, float]]],
             index: dict[int, int]) -> dict[str, Any]:
    """Spend and saving over time by feature, model, tenant and lever: the TOP keys of each (by spend and saving
    over the period), the rest summed as "other" by the database. For levers, the spend is their cost records and
    the saving their net (saving records - cost records)."""
    def size(dim: str, m: dict[str, float]) -> float:
        if dim == "lever":
            return abs(m["saving_usd"]) + abs(m["extra_cost_usd"])
        return abs(m["cost_usd"]) + abs(m["saved_usd"])

    top = {dim: sorted(totals.get(dim, {}), key=lambda k, d=dim: -size(d, totals[d][k]))[:TOP] for dim in STACKED}
    case, params = [], []
    for dim in STACKED:
        if top[dim]:
            case.append(f"(dim = ? AND key IN ({', '.join('?' * len(top[dim]))}))")
            params += [dim, *top[dim]]
    named = f"CASE WHEN {' OR '.join(case)} THEN key ELSE '~other' END" if case else "'~other'"
    rows = store.query(f"SELECT dim, {named} AS k, bucket, SUM(cost_usd), SUM(saved_usd), SUM(saving_usd), "
                       f"SUM(extra_cost_usd) FROM rollups WHERE {scope} AND dim IN ({', '.join('?' * len(STACKED))}) "
                       "GROUP BY dim, k, bucket", (*params, *args, *STACKED))
    n = len(index)
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {d: {} for d in STACKED}
    for dim, key, bucket, cost, saved, saving, extra in rows:
        spend_s, saved_s = series[dim].setdefault(key, ([0.0] * n, [0.0] * n))
        i = index[int(bucket)]
        spend_s[i] = round(float(extra if dim == "lever" else cost), 9)
        saved_s[i] = round(float((saving or 0) - (extra or 0) if dim == "lever" else saved), 9)
    out = {}
    for dim in STACKED:
        keys = [k for k in top[dim] if k in series[dim]] + (["~other"] if "~other" in series[dim] else [])
        out[dim] = {"keys": [k if k != "~other" else "other" for k in keys],
                    "spend": [series[dim][k][0] for k in keys], "saved": [series[dim][k][1] for k in keys]}
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
    if dim == "template":  # a logged call whose prompt has this template (the top prompts' table)
        return r["prompt"] is not None and prompts.template_of(r["prompt"]) == key
    raise BadQuery(f"no calls behind dimension {dim!r}")


def calls(store: LedgerWriter, f: Filters, dim: str = "all", key: str = "", after: str | None = None,
          limit: int = PAGE) -> dict[str, Any]:
    """Newest first, keyset-paginated by (ts, request_id): `next` is the cursor of the following page. One page
    reads at most SCAN_ROWS rows of the period, walking the `ts` index backwards (no sort in the database); when
    they hold fewer matches than a page, the page is short and `next` continues from where the scan stopped, so
    a rare key never makes one request unbounded. Filters are applied here, with the roll-ups' definitions (an
    index on tenant would make the database sort all of a tenant's calls)."""
    limit = max(1, min(int(limit), 500))
    hi_ts, hi_id = f.until, "\uffff"
    if after:
        ts_text, _, rid = after.partition(",")
        try:
            hi_ts, hi_id = float(ts_text), rid
        except ValueError as exc:
            raise BadQuery("after: expected the cursor of a previous page") from exc
    columns = CALL_COLUMNS
    if dim == "template":
        if not prompts.has_log(store):
            return {"calls": [], "next": None, "scanned": 0}
        columns = [*CALL_COLUMNS, f"{prompts.PROMPT_OF_CALL} AS prompt"]
    rows = store.query(f"SELECT {', '.join(columns)} FROM calls WHERE ts >= ? AND ts <= ? "
                       f"ORDER BY ts DESC LIMIT {SCAN_ROWS}", (f.since, hi_ts))
    full = len(rows) == SCAN_ROWS
    if full and rows[0][0] != rows[-1][0]:  # the last instant may be cut short: the next page reads it whole
        cut = rows[-1][0]
        rows = [r for r in rows if r[0] != cut]
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    found, last = [], None
    for values in rows:
        r = dict(zip([*CALL_COLUMNS, "prompt"], values, strict=False))
        if (r["ts"], r["request_id"]) >= (hi_ts, hi_id):
            continue  # on the previous page
        last = r
        if (not f.tenant or _name(r["tenant"]) == f.tenant) and (not f.feature or _name(r["feature"]) == f.feature) \
                and _matches(dim, key, r):
            found.append(r)
            if len(found) == limit:
                break
    more = len(found) == limit or full
    cursor = f"{last['ts']!r},{last['request_id']}" if last is not None and more else None
    for r in found:
        r["route"] = route_of(r.pop("decisions"))
        r.pop("prompt", None)
    return {"calls": found, "next": cursor, "scanned": len(rows) if len(found) < limit else None}
