"""Per feature, from the ledger: structured-output calls checked, and how many had an invalid answer, were
repaired, answered by the fallback model, or failed (`scrimp usage --output`)."""

from __future__ import annotations

from typing import Any

from scrimp.ledger.rollup import decisions_of

# error: the provider call failed before any answer could be judged
OUTCOMES = ("valid", "repaired", "fallback", "failed", "truncated", "refused", "unchecked", "error")


def structured_report(store: Any, since: float | None = None) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for feature, d in decisions_of(store, "structured", since):
        r = rows.setdefault(feature, {"checked": 0, "invalid": 0, **dict.fromkeys(OUTCOMES, 0)})
        r["checked"] += 1
        r["invalid"] += bool(d.get("invalid"))
        if d.get("outcome") in OUTCOMES:
            r[d["outcome"]] += 1
    return rows
