"""Pre-aggregated roll-ups of the ledger, kept as rows arrive, so a dashboard over millions of calls reads
thousands of rows, not millions.

One row per (tenant scope, feature scope, span, bucket, dimension, key): `span` is `h` (bucket = unix hour) or
`d` (bucket = unix day); the tenant and feature scopes are a tenant / feature, or `ALL` ('') for every one, so
a filter by tenant and feature is one index range too. Dimensions: `all` (key ''), `feature`, `tenant`,
`model` (served, else requested), `cache` (miss / exact / semantic), `status`, `lever` (calls a lever saved on,
from `saving_stage`, and its saving / cost records from `savings`), `route` (the router's `route` decision,
e.g. `support:cheap`), `shadow` (shadow evaluations by route) and `event` (events by kind, a budget's name
added for budget events).

The ledger writer folds each batch into these rows and upserts them in the batch's own transaction: the
roll-ups and the raw rows commit together, so they always agree (tests recount them from the raw ledger).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

ALL = ""  # the tenant / feature scope meaning "every one"
SPANS = (("h", 1), ("d", 24))  # a span's bucket is the hour divided by this
LATENCY_BOUNDS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, math.inf)
LATENCY_COLUMNS = [f"lat_{'inf' if math.isinf(b) else int(b)}" for b in LATENCY_BOUNDS_MS]

# The summed measures of a roll-up row (every one adds up, so an upsert is `old + new`).
MEASURES = ["calls", "ok", "errors", "cancelled", "cost_usd", "baseline_usd", "saved_usd",
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
            "exact_hits", "semantic_hits", "prompt_cache_hits", "latency_ms_sum", *LATENCY_COLUMNS,
            "saving_usd", "extra_cost_usd",  # lever: its saving and cost records
            "records", "score_sum", "scored"]  # lever records, events, shadow runs; shadow scores
FLOAT_MEASURES = {"cost_usd", "baseline_usd", "saved_usd", "latency_ms_sum", "saving_usd", "extra_cost_usd",
                  "score_sum"}
KEYS = ["tenant", "feature", "span", "bucket", "dim", "key"]
_IDX = {m: i for i, m in enumerate(MEASURES)}
_N = len(MEASURES)
DIMS = ("all", "feature", "tenant", "model", "cache", "status", "lever", "route", "shadow", "event")


def create_statements(sqlite: bool) -> list[str]:
    cols = ["tenant TEXT NOT NULL", "feature TEXT NOT NULL", "span TEXT NOT NULL", "bucket BIGINT NOT NULL",
            "dim TEXT NOT NULL", "key TEXT NOT NULL"]
    cols += [f"{m} {'DOUBLE PRECISION' if m in FLOAT_MEASURES else 'BIGINT'} NOT NULL DEFAULT 0" for m in MEASURES]
    pk = "PRIMARY KEY (tenant, feature, span, bucket, dim, key)"  # a filter + a period is one index range
    return [f"CREATE TABLE IF NOT EXISTS rollups ({', '.join(cols)}, {pk})" + (" WITHOUT ROWID" if sqlite else "")]


def upsert_sql(placeholder: str) -> str:
    names = KEYS + MEASURES
    sets = ", ".join(f"{m} = rollups.{m} + excluded.{m}" for m in MEASURES)
    return (f"INSERT INTO rollups ({', '.join(names)}) VALUES ({', '.join([placeholder] * len(names))}) "
            f"ON CONFLICT (tenant, feature, span, bucket, dim, key) DO UPDATE SET {sets}")


def _name(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def latency_bucket(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS) - 1


def route_of(decisions: str | None) -> str | None:
    if not decisions or '"route"' not in decisions:  # most rows: no parse
        return None
    try:
        route = orjson.loads(decisions).get("route")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(route) if route else None


class Batch:
    """One writer batch folded into roll-up rows. Rows are first grouped by everything a dimension reads
    (few distinct groups per batch), then each group is spread over its dimensions and scopes."""

    def __init__(self) -> None:
        self.groups: dict[tuple, list[float]] = {}

    def _add(self, group: tuple, vector: list[float]) -> None:
        acc = self.groups.get(group)
        if acc is None:
            self.groups[group] = vector
        else:
            for i in range(_N):
                acc[i] += vector[i]

    def add(self, table: str, row: dict[str, Any]) -> None:
        if table == "calls":
            self.add_call(row)
        elif table == "savings":
            v = [0.0] * _N
            v[_IDX["saving_usd" if row.get("kind") == "saving" else "extra_cost_usd"]] = row.get("usd") or 0.0
            v[_IDX["records"]] = 1
            self._add(("lever", int(row["ts"] // 3600), _name(row.get("tenant")), _name(row.get("feature")), row["lever"]), v)
        elif table == "shadow":
            v = [0.0] * _N
            v[_IDX["records"]] = 1
            v[_IDX["cost_usd"]] = row.get("cost_usd") or 0.0
            if row.get("score") is not None:
                v[_IDX["score_sum"]], v[_IDX["scored"]] = float(row["score"]), 1
            self._add(("shadow", int(row["ts"] // 3600), _name(row.get("tenant")), _name(row.get("feature")), row["route"]), v)
        elif table == "events":
            key = row["kind"]
            if key.startswith("budget_") and row.get("detail"):
                try:
                    key += ":" + str(orjson.loads(row["detail"]).get("budget"))
                except (orjson.JSONDecodeError, AttributeError):
                    pass
            elif row.get("route"):
                key += ":" + row["route"]
            v = [0.0] * _N
            v[_IDX["records"]] = 1
            self._add(("event", int(row["ts"] // 3600), _name(row.get("tenant")), _name(row.get("feature")), key), v)

    def add_call(self, row: dict[str, Any]) -> None:
        v = [0.0] * _N
        status, cache = row.get("status") or "ok", row.get("cache") or "miss"
        v[0] = 1
        v[_IDX["ok"]] = status == "ok"
        v[_IDX["errors"]] = status == "error"
        v[_IDX["cancelled"]] = status == "client_cancelled"
        for m in ("cost_usd", "baseline_usd", "saved_usd", "input_tokens", "output_tokens", "cache_read_tokens"):
            v[_IDX[m]] = row.get(m) or 0
        v[_IDX["cache_write_tokens"]] = (row.get("cache_write_5m_tokens") or 0) + (row.get("cache_write_1h_tokens") or 0)
        v[_IDX["exact_hits"]] = cache == "exact"
        v[_IDX["semantic_hits"]] = cache == "semantic"
        v[_IDX["prompt_cache_hits"]] = (row.get("cache_read_tokens") or 0) > 0
        latency = row.get("latency_ms") or 0.0
        v[_IDX["latency_ms_sum"]] = latency
        v[_IDX[LATENCY_COLUMNS[latency_bucket(latency)]]] = 1
        group = ("call", int(row["ts"] // 3600), _name(row.get("tenant")), _name(row.get("feature")),
                 _name(row.get("served_model") or row.get("requested_model")), cache, status,
                 row.get("saving_stage") or "", route_of(row.get("decisions")))
        self._add(group, v)

    def rows(self) -> Iterable[tuple]:
        """(tenant, feature, span, bucket, dim, key, *measures), each key once. The sums are one numpy
        scatter-add (each group lands in ~50 roll-up rows: summing in Python loops was the writer's main cost)."""
        targets: dict[tuple, int] = {}  # roll-up key -> its row in the output
        vectors = list(self.groups.values())
        tid: list[int] = []
        gid: list[int] = []

        def put(key: tuple, g: int) -> None:
            tid.append(targets.setdefault(key, len(targets)))
            gid.append(g)

        for g, group in enumerate(list(self.groups)):
            kind, hour, tenant, feature = group[:4]
            if kind == "call":
                model, cache, status, levers, route = group[4:]
                dims = [("all", ""), ("model", model), ("cache", cache), ("status", status)]
                if route:
                    dims.append(("route", route))
                counted = None
                if levers:  # a call counts once under each lever that saved on it; the dollars come from `savings`
                    counted = len(vectors)
                    vectors.append([vectors[g][0]] + [0.0] * (_N - 1))
            else:
                dims, levers, counted = [(kind, group[4])], "", None
            for span, hours in SPANS:
                bucket = hour // hours
                for t in (tenant, ALL):
                    for f in (feature, ALL):
                        for dim, key in dims:
                            put((t, f, span, bucket, dim, key), g)
                        if counted is not None:
                            for lever in levers.split(","):
                                put((t, f, span, bucket, "lever", lever), counted)
                if kind == "call":  # by feature (every tenant or one) and by tenant (every feature or one)
                    for t in (tenant, ALL):
                        put((t, ALL, span, bucket, "feature", feature), g)
                    for f in (feature, ALL):
                        put((ALL, f, span, bucket, "tenant", tenant), g)
        if not targets:
            return
        sums = np.zeros((len(targets), _N))
        np.add.at(sums, np.asarray(tid), np.asarray(vectors, dtype=np.float64)[np.asarray(gid)])
        columns = [sums[:, i].tolist() if m in FLOAT_MEASURES else np.rint(sums[:, i]).astype(np.int64).tolist()
                   for i, m in enumerate(MEASURES)]
        for key, values in zip(targets, zip(*columns, strict=True), strict=True):
            yield key + values

    def write(self, cursor: Any, placeholder: str) -> int:
        rows = list(self.rows())
        if rows:
            cursor.executemany(upsert_sql(placeholder), rows)
        return len(rows)


_READS = {
    "calls": ["ts", "tenant", "feature", "served_model", "requested_model", "cache", "status", "saving_stage",
              "decisions", "cost_usd", "baseline_usd", "saved_usd", "input_tokens", "output_tokens",
              "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "latency_ms"],
    "savings": ["ts", "tenant", "feature", "kind", "lever", "usd"],
    "shadow": ["ts", "tenant", "feature", "route", "score", "cost_usd"],
    "events": ["ts", "kind", "route", "tenant", "feature", "detail"],
}


def backfill(cursor: Any, placeholder: str) -> None:
    """Fold the rows already in the ledger into `rollups` (migration 5 on an existing ledger), a day at a
    time so memory stays bounded."""
    cursor.execute("SELECT MIN(ts), MAX(ts) FROM calls")
    lo, hi = cursor.fetchone()
    if lo is None:
        return
    day = int(lo // 86400)
    while day * 86400 <= hi:
        batch = Batch()
        for table, cols in _READS.items():
            cursor.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE ts >= {placeholder} AND ts < {placeholder}",
                           (day * 86400, (day + 1) * 86400))
            for values in cursor.fetchall():
                batch.add(table, dict(zip(cols, values, strict=True)))
        batch.write(cursor, placeholder)
        day += 1
