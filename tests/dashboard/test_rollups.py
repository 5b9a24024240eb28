"""The roll-ups equal a recount from the raw ledger, after random traffic written in many batches, on SQLite
and PostgreSQL; and migration 5 fills them from a ledger that had rows before it."""

from __future__ import annotations

import math
from collections import defaultdict

import orjson
import pytest

from scrimp.ledger.aggregates import KEYS, MEASURES
from tests.dashboard.traffic import write_traffic

BOUNDS = [100, 250, 500, 1000, 2500, 5000, 10000, math.inf]


def name(v):
    return str(v) if v not in (None, "") else "-"


def recount(store) -> dict[tuple, dict[str, float]]:
    """What the roll-ups should hold, counted afresh from the raw tables."""
    want: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def put(ts, tenant, feature, dim, key, values, scopes="both"):
        for span, sec in (("h", 3600), ("d", 86400)):
            ts_scopes = [tenant, ""] if scopes != "tenant_all" else [""]
            f_scopes = [feature, ""] if scopes != "feature_all" else [""]
            for t in ts_scopes:
                for f in f_scopes:
                    row = want[(t, f, span, int(ts // sec), dim, key)]
                    for m, v in values.items():
                        row[m] += v

    cols = ["ts", "tenant", "feature", "served_model", "requested_model", "cache", "status", "saving_stage",
            "decisions", "cost_usd", "baseline_usd", "saved_usd", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "latency_ms"]
    for values in store.query(f"SELECT {', '.join(cols)} FROM calls"):
        r = dict(zip(cols, values, strict=True))
        lat = next(b for b in BOUNDS if r["latency_ms"] <= b)
        m = {"calls": 1, "ok": r["status"] == "ok", "errors": r["status"] == "error",
             "cancelled": r["status"] == "client_cancelled", "cost_usd": r["cost_usd"],
             "baseline_usd": r["baseline_usd"], "saved_usd": r["saved_usd"], "input_tokens": r["input_tokens"],
             "output_tokens": r["output_tokens"], "cache_read_tokens": r["cache_read_tokens"],
             "cache_write_tokens": r["cache_write_5m_tokens"] + r["cache_write_1h_tokens"],
             "exact_hits": r["cache"] == "exact", "semantic_hits": r["cache"] == "semantic",
             "prompt_cache_hits": r["cache_read_tokens"] > 0, "latency_ms_sum": r["latency_ms"],
             f"lat_{'inf' if lat == math.inf else lat}": 1}
        t, f = name(r["tenant"]), name(r["feature"])
        put(r["ts"], t, f, "all", "", m)
        put(r["ts"], t, f, "feature", f, m, "feature_all")
        put(r["ts"], t, f, "tenant", t, m, "tenant_all")
        put(r["ts"], t, f, "model", name(r["served_model"] or r["requested_model"]), m)
        put(r["ts"], t, f, "cache", r["cache"], m)
        put(r["ts"], t, f, "status", r["status"], m)
        for lever in (r["saving_stage"] or "").split(","):
            if lever:
                put(r["ts"], t, f, "lever", lever, {"calls": 1})
        route = orjson.loads(r["decisions"]).get("route")
        if route:
            put(r["ts"], t, f, "route", route, m)
    for ts, tenant, feature, kind, lever, usd in store.query("SELECT ts, tenant, feature, kind, lever, usd FROM savings"):
        put(ts, name(tenant), name(feature), "lever", lever,
            {"records": 1, ("saving_usd" if kind == "saving" else "extra_cost_usd"): usd})
    for ts, tenant, feature, route, score, cost in store.query(
            "SELECT ts, tenant, feature, route, score, cost_usd FROM shadow"):
        put(ts, name(tenant), name(feature), "shadow", route,
            {"records": 1, "cost_usd": cost, "score_sum": score, "scored": 1})
    for ts, tenant, feature, kind, detail in store.query("SELECT ts, tenant, feature, kind, detail FROM events"):
        put(ts, name(tenant), name(feature), "event", f"{kind}:{orjson.loads(detail)['budget']}", {"records": 1})
    return want


def stored(store) -> dict[tuple, dict[str, float]]:
    rows = store.query(f"SELECT {', '.join(KEYS + MEASURES)} FROM rollups")
    return {tuple(r[:len(KEYS)]): dict(zip(MEASURES, r[len(KEYS):], strict=True)) for r in rows}


def assert_same(got, want):
    assert set(got) == set(want), (sorted(set(got) ^ set(want))[:5])
    for key, measures in want.items():
        for m in MEASURES:
            assert got[key][m] == pytest.approx(measures.get(m, 0), rel=1e-9, abs=1e-9), (key, m)


def test_rollups_equal_a_recount_after_random_traffic(backend):
    store = backend()
    store.batch_size = 97  # many batches, so the same roll-up row is upserted many times
    store.batch_window_s = 0.0
    store.start()
    try:
        write_traffic(store, 500, seed=1, days=1)
        store.flush()
        write_traffic(store, 250, seed=2, days=1)  # a second wave: updates rows the first one made
        store.flush()
        assert store.failed_rows == 0
        assert store.query("SELECT COUNT(*) FROM calls")[0][0] == 750
        want = recount(store)
        assert_same(stored(store), want)
        # a few figures a reader would check by hand
        total = store.query("SELECT SUM(cost_usd), COUNT(*) FROM calls")[0]
        got = store.query("SELECT SUM(cost_usd), SUM(calls) FROM rollups WHERE tenant = '' AND feature = '' "
                          "AND span = 'd' AND dim = 'all'")[0]
        assert got[0] == pytest.approx(total[0]) and got[1] == total[1]
    finally:
        store.close()


def test_migration_5_fills_rollups_from_rows_written_before_it(backend):
    store = backend(rollups=False)  # a ledger whose writer kept no roll-ups
    store.start()
    write_traffic(store, 200, seed=3, days=1)
    store.flush()
    store.close()
    assert store.query("SELECT COUNT(*) FROM rollups")[0][0] == 0
    conn = store.connect()  # as if the ledger predated migration 5
    conn.cursor().execute("DROP TABLE rollups")
    conn.cursor().execute("DELETE FROM scrimp_migrations WHERE version = 5")
    conn.commit()
    conn.close()
    again = backend()
    again.start()
    try:
        assert_same(stored(again), recount(again))
        assert again.query("SELECT SUM(calls) FROM rollups WHERE tenant = '' AND feature = '' AND span = 'h' "
                           "AND dim = 'all'")[0][0] == 200
    finally:
        again.close()


class Rows:
    def __init__(self):
        self.rows = []

    def write(self, row, table="calls"):
        self.rows.append((table, row))


def test_rows_a_stage_inserts_in_its_own_transaction_get_their_rollups(backend):
    store = backend()
    store.start()
    try:
        write_traffic(store, 100, seed=4, days=1)
        store.flush()
        held = Rows()
        write_traffic(held, 100, seed=5, days=1)  # e.g. the batch lane's lines, written with its own state
        conn = store.connect()
        store.insert_now(conn.cursor(), held.rows)
        conn.commit()
        conn.close()
        store.committed(held.rows)
        assert store.query("SELECT COUNT(*) FROM calls")[0][0] == 200
        assert_same(stored(store), recount(store))
        spent = sum(s.value for s in store.counters.samples() if s.name == "scrimp_ledger_spend_usd_total")
        assert spent == pytest.approx(store.query("SELECT SUM(cost_usd) FROM calls")[0][0])
    finally:
        store.close()
