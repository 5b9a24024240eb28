"""Per feature, from the ledger: structured-output calls checked, and how many had an invalid answer, were
repaired, answered by the fallback model, or failed (`scrimp usage --output`)."""

from __future__ import annotations

from typing import Any

import orjson

# error: the provider call failed before any answer could be judged
OUTCOMES = ("valid", "repaired", "fallback", "failed", "truncated", "refused", "unchecked", "error")


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


def structured_report(store: Any, since: float | None = None) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for feature, d in decisions_of(store, "structured", since):
        r = rows.setdefault(feature, {"checked": 0, "invalid": 0, **dict.fromkeys(OUTCOMES, 0)})
        r["checked"] += 1
        r["invalid"] += bool(d.get("invalid"))
        if d.get("outcome") in OUTCOMES:
            r[d["outcome"]] += 1
    return rows
