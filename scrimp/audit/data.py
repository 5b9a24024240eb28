"""The period an audit looks at: the ledger's calls, its shadow evaluations and, when the request log is on,
the logged bodies of the same calls (joined on request_id)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from scrimp.audit.logged import summary
from scrimp.ledger.store import LedgerStore

CALL_COLUMNS = ["ts", "request_id", "tenant", "feature", "requested_model", "served_model", "provider",
                "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                "cache_write_1h_tokens", "cost_usd", "baseline_usd", "saved_usd", "cache", "decisions", "stream",
                "status", "latency_ms"]


@dataclass
class Traffic:
    since: float
    until: float
    calls: list[dict[str, Any]]  # ledger rows of client calls (shadow evaluations apart), oldest first
    shadow_calls: list[dict[str, Any]] = field(default_factory=list)  # a router's shadow evaluations (as calls)
    shadow: list[dict[str, Any]] = field(default_factory=list)  # rows of the shadow table
    logged: dict[str, dict[str, Any]] = field(default_factory=dict)  # request_id -> logged.summary of its entry
    request_log: bool = False  # whether the ledger's database has a request log at all
    stages: list[str] = field(default_factory=list)  # the configured stages (with --config), else []

    @property
    def days(self) -> float:
        """The days the figures cover: the period, from its first call when traffic started later (a ledger
        younger than the period asked for); at least a day, so a few minutes of traffic are not projected to a
        month as if they went on all day."""
        return max(self.covered_days, 1.0)

    @property
    def covered_days(self) -> float:
        start = max(self.since, self.calls[0]["ts"]) if self.calls else self.since
        return max((self.until - start) / 86400.0, 0.0)

    def per_month(self, usd: float) -> float:
        """A figure over the period, projected to 30 days."""
        return usd * 30.0 / self.days

    def by_feature(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for c in self.calls:
            out.setdefault(c["feature"] or "-", []).append(c)
        return out


def load(store: LedgerStore, since: float | None, until: float | None = None, tenant: str | None = None,
         stages: list[str] | None = None) -> Traffic:
    until = until if until is not None else time.time()
    clauses, params = ["ts < ?"], [until]
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if tenant is not None:
        clauses.append("tenant = ?")
        params.append(tenant)
    where = " AND ".join(clauses)
    rows = store.query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE {where} ORDER BY ts", params)
    calls, shadow_calls = [], []
    for r in rows:
        c = dict(zip(CALL_COLUMNS, r, strict=True))
        c["decisions"] = orjson.loads(c["decisions"]) if c["decisions"] else {}
        for k in ("cost_usd", "baseline_usd", "saved_usd"):
            c[k] = float(c[k] or 0)
        c["shadow"] = (isinstance(c["decisions"].get("shadow"), str) and len(c["decisions"]) == 1
                       and c["baseline_usd"] == 0)
        (shadow_calls if c["shadow"] else calls).append(c)
    first = calls[0]["ts"] if calls else until
    traffic = Traffic(since if since is not None else first, until, calls, shadow_calls, stages=stages or [])
    shadow_cols = ["ts", "route", "feature", "cheap_model", "strong_model", "served", "score", "cost_usd"]
    traffic.shadow = [dict(zip(shadow_cols, r, strict=True)) for r in store.query(
        f"SELECT {', '.join(shadow_cols)} FROM shadow WHERE {where}", params)]
    traffic.logged, traffic.request_log = _logged(store, since, until, tenant)
    return traffic


def _logged(store: LedgerStore, since: float | None, until: float,
            tenant: str | None) -> tuple[dict[str, dict[str, Any]], bool]:
    from scrimp.requestlog.store import RequestLogStore

    try:
        (count,), = store.query("SELECT COUNT(*) FROM request_log")  # read only: no table is created here
    except Exception:  # noqa: BLE001 - no request log in this database
        return {}, False
    if not count:
        return {}, False
    log = RequestLogStore.of_ledger(store)
    try:
        return {e["request_id"]: summary(e) for e in log.iter_entries(tenant=tenant, since=since, until=until)}, True
    finally:
        log.close()
