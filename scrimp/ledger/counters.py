"""Spend and savings counters for `GET /metrics`, counted by the ledger writer as rows commit (so they agree
with the ledger), per process: Prometheus sums the replicas and handles restarts (they are counters).

Labels are a feature, a model, a lever: values the deployment chooses, but a client can make up features, so
past `MAX_SERIES` label sets per counter the rest count under `other` rather than growing without bound."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from scrimp.metrics import Sample

MAX_SERIES = 2000
OTHER = "other"

HELP = {
    "scrimp_ledger_calls_total": "Calls recorded in the ledger, by feature and status.",
    "scrimp_ledger_spend_usd_total": "What calls cost (USD), by feature and the model that answered.",
    "scrimp_ledger_baseline_usd_total": "What calls would have cost without scrimp (USD), by feature.",
    "scrimp_ledger_saved_usd_total": "Net saving (baseline - cost, USD), by feature.",
    "scrimp_ledger_cache_hits_total": "Calls answered by a response cache, by feature and kind (exact, semantic).",
    "scrimp_ledger_input_tokens_total": "Input tokens (uncached, cache read, cache write), by feature and kind.",
    "scrimp_ledger_output_tokens_total": "Output tokens, by feature.",
    "scrimp_lever_saved_usd_total": "A lever's saving records (USD, gross), by lever and feature.",
    "scrimp_lever_cost_usd_total": "A lever's cost records (USD: a cascade's rejected attempt, a shadow call), "
                                   "by lever and feature.",
}


def _label(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


class LedgerCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def _inc(self, name: str, labels: dict[str, str], value: float) -> None:
        if not value:
            return
        series = self._values[name]
        key = tuple(labels.items())
        if key not in series and len(series) >= MAX_SERIES:
            key = tuple((k, OTHER) for k in labels)
        series[key] = series.get(key, 0.0) + value

    def add(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Count rows the writer has just committed."""
        with self._lock:
            for table, row in rows:
                feature = _label(row.get("feature"))
                if table == "calls":
                    f = {"feature": feature}
                    self._inc("scrimp_ledger_calls_total", {**f, "status": _label(row.get("status"))}, 1)
                    model = _label(row.get("served_model") or row.get("requested_model"))
                    self._inc("scrimp_ledger_spend_usd_total", {**f, "model": model}, row.get("cost_usd") or 0.0)
                    self._inc("scrimp_ledger_baseline_usd_total", f, row.get("baseline_usd") or 0.0)
                    self._inc("scrimp_ledger_saved_usd_total", f, row.get("saved_usd") or 0.0)
                    if row.get("cache") in ("exact", "semantic"):
                        self._inc("scrimp_ledger_cache_hits_total", {**f, "kind": row["cache"]}, 1)
                    for kind, n in (("uncached", row.get("input_tokens")), ("cache_read", row.get("cache_read_tokens")),
                                    ("cache_write", (row.get("cache_write_5m_tokens") or 0)
                                     + (row.get("cache_write_1h_tokens") or 0))):
                        self._inc("scrimp_ledger_input_tokens_total", {**f, "kind": kind}, n or 0)
                    self._inc("scrimp_ledger_output_tokens_total", f, row.get("output_tokens") or 0)
                elif table == "savings":
                    name = "scrimp_lever_saved_usd_total" if row.get("kind") == "saving" else "scrimp_lever_cost_usd_total"
                    self._inc(name, {"lever": _label(row.get("lever")), "feature": feature}, row.get("usd") or 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            return [Sample(name, "counter", HELP[name], value, dict(key))
                    for name in HELP for key, value in sorted(self._values.get(name, {}).items())]
