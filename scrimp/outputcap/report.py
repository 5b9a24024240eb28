"""Per feature, from the ledger: the calls scrimp capped, and how many of those stopped at its cap (truncated)
and were continued (`scrimp usage --output`)."""

from __future__ import annotations

from typing import Any

from scrimp.ledger.rollup import decisions_of


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
