"""Cost per successful request: spend divided by the calls that succeeded (errors, cancelled streams and answers
refused after a failed schema check are cost without success; a router's shadow calls are spend, not requests),
per group of `scrimp usage`, with its trend: the second half of the period against the first."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from scrimp.ledger.rollup import GROUPS
from scrimp.ledger.store import LedgerStore

_OK = "status = 'ok' AND COALESCE(saving_stage, '') <> 'router_shadow'"


def per_success(store: LedgerStore, by: str, since: float | None, until: float | None = None
                ) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """({group: {"cost_per_success_usd", "trend"}}, the same for all calls). `trend` is the relative change of
    the second half's cost per successful request against the first half's (None without successes in both)."""
    until = until if until is not None else time.time()
    start = since
    if start is None:
        (first,), = store.query("SELECT MIN(ts) FROM calls")
        start = float(first) if first is not None else until
    mid = start + (until - start) / 2
    expr = GROUPS.get(by) or "CAST(ts AS BIGINT) / 86400"
    where, params = ("WHERE ts >= ?", [start]) if since is not None else ("", [])
    sql = (f"SELECT {expr} AS k, SUM(CASE WHEN ts < ? THEN cost_usd ELSE 0 END), "
           f"SUM(CASE WHEN ts < ? AND {_OK} THEN 1 ELSE 0 END), SUM(CASE WHEN ts >= ? THEN cost_usd ELSE 0 END), "
           f"SUM(CASE WHEN ts >= ? AND {_OK} THEN 1 ELSE 0 END) FROM calls {where} GROUP BY k")
    rows = store.query(sql, [mid, mid, mid, mid, *params])
    out, total = {}, [0.0, 0, 0.0, 0]
    for k, c1, n1, c2, n2 in rows:
        parts = [float(c1 or 0), int(n1 or 0), float(c2 or 0), int(n2 or 0)]
        if by == "day":
            k = datetime.fromtimestamp(int(k) * 86400, UTC).strftime("%Y-%m-%d")
        out[k] = _figures(*parts)
        total = [a + b for a, b in zip(total, parts, strict=True)]
    return out, _figures(*total)


def _figures(c1: float, n1: int, c2: float, n2: int) -> dict[str, Any]:
    first, second = (c1 / n1 if n1 else None), (c2 / n2 if n2 else None)
    return {"cost_per_success_usd": (c1 + c2) / (n1 + n2) if n1 + n2 else None,
            "succeeded": n1 + n2,
            "trend": (second - first) / first if first and second is not None else None}


def trend_text(trend: float | None) -> str:
    return "-" if trend is None else f"{trend:+.0%}"
