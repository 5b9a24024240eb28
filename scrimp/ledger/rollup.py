"""Roll-ups of the ledger for `scrimp usage` and reports."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from scrimp.ledger.store import LedgerStore

GROUPS = {"feature": "COALESCE(feature, '-')", "model": "COALESCE(served_model, requested_model)",
          "user": "COALESCE(user_id, '-')", "tenant": "tenant", "day": None,
          "cache": "COALESCE(cache, 'miss')",  # miss | exact | semantic
          "key": "COALESCE(key_id, '-')",  # the gateway key (scrimp.auth); '-' for calls without one
          "lever": None}  # from the savings table: each lever's records


def parse_since(value: str | None) -> float | None:
    """'7d', '12h', '30m' or an ISO date -> unix seconds."""
    if not value:
        return None
    m = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if m:
        return time.time() - int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"--since: expected e.g. 7d, 12h or 2026-11-01, got {value!r}") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def usage(store: LedgerStore, by: str = "feature", since: float | None = None) -> list[dict[str, Any]]:
    if by not in GROUPS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}")
    if by == "lever":
        return by_lever(store, since)
    group = GROUPS[by]
    if group is None:  # day: computed in Python, portable across SQLite and PostgreSQL
        group = "CAST(ts AS BIGINT) / 86400"
    where, params = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
    rows = store.query(
        f"SELECT {group} AS k, COUNT(*), SUM(cost_usd), SUM(baseline_usd), SUM(saved_usd), "
        "SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_5m_tokens + cache_write_1h_tokens), "
        "SUM(CASE WHEN cache IN ('exact', 'semantic') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) "
        f"FROM calls {where} GROUP BY k ORDER BY SUM(cost_usd) DESC", params)
    out = []
    for k, calls, cost, base, saved, inp, outp, cread, cwrite, hits, errors in rows:
        if by == "day":
            k = datetime.fromtimestamp(int(k) * 86400, UTC).strftime("%Y-%m-%d")
        out.append({by: k, "calls": int(calls), "cost_usd": float(cost or 0), "baseline_usd": float(base or 0),
                    "saved_usd": float(saved or 0), "input_tokens": int(inp or 0), "output_tokens": int(outp or 0),
                    "cache_read_tokens": int(cread or 0), "cache_write_tokens": int(cwrite or 0),
                    "cache_hits": int(hits or 0), "cache_hit_rate": (hits or 0) / calls if calls else 0.0,
                    "errors": int(errors or 0)})
    return out


def by_lever(store: LedgerStore, since: float | None = None) -> list[dict[str, Any]]:
    """Per lever: the calls it touched, what it saved, what it cost besides (a cascade's rejected attempts,
    a shadow evaluation), and the net. Summed over levers, the net is the calls' total saving."""
    where, params = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
    rows = store.query(
        "SELECT lever, COUNT(DISTINCT request_id), "
        "SUM(CASE WHEN kind = 'saving' THEN usd ELSE 0 END), SUM(CASE WHEN kind = 'cost' THEN usd ELSE 0 END) "
        f"FROM savings {where} GROUP BY lever", params)
    out = [{"lever": lever, "calls": int(calls), "gross_saving_usd": float(saved or 0),
            "extra_cost_usd": float(spent or 0), "saved_usd": float(saved or 0) - float(spent or 0)}
           for lever, calls, saved, spent in rows]
    return sorted(out, key=lambda r: -r["saved_usd"])


def decisions_of(store: Any, key: str, since: float | None) -> list[tuple[str, dict[str, Any]]]:
    """(feature, decisions[key]) of every call whose decisions hold `key` as an object, oldest first: what a
    lever's own report (`scrimp usage --output`) counts."""
    import orjson

    sql = "SELECT feature, decisions FROM calls WHERE decisions LIKE ?"
    params: list[Any] = [f'%"{key}"%']
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    out = []
    for feature, raw in store.query(sql + " ORDER BY ts", params):
        value = orjson.loads(raw or "{}").get(key)
        if isinstance(value, dict):
            out.append((feature or "-", value))
    return out
