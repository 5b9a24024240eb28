"""Per feature, from the ledger: the calls scrimp capped, and how many of those stopped at its cap (truncated)
and were continued (`scrimp usage --output`)."""

from __future__ import annotations

from typing import Any

import orjson


def decisions_of(store: Any, key: str, since: float | None) -> list[tuple[str, dict[str, Any]]]:
    """(feature, decisions[key]) of every call that has the decision, oldest first."""
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


def output_cap_report(store: Any, since: float | None = None) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for feature, d in decisions_of(store, "output_cap", since):
        r = rows.setdefault(feature, {"capped": 0, "truncated": 0, "continued": 0})
        r["capped"] += 1
        r["truncated"] += bool(d.get("truncated"))
        r["continued"] += bool(d.get("continued"))
    for r in rows.values():
        r["truncation_rate"] = r["truncated"] / r["capped"]
        r["continuation_rate"] = r["continued"] / r["capped"]
    return rows
