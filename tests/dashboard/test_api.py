"""The dashboard's API over a ledger of random traffic (SQLite and PostgreSQL): the overview's figures equal
the raw ledger's for each filter, and the calls behind a chart, read page by page, are exactly the calls it
counted, each once (keyset pages, each scanning a bounded window)."""

from __future__ import annotations

import time

import pytest

from scrimp.dashboard import queries
from tests.dashboard.traffic import write_traffic

NOW = time.time()


@pytest.fixture
def store(backend):
    s = backend()
    s.batch_window_s = 0.0
    s.start()
    write_traffic(s, 600, seed=11, days=3, now=NOW)
    s.flush()
    yield s
    s.close()


def test_overview_figures_equal_the_ledger_for_each_filter(store):
    for params, where, args in [({"since": "7d"}, "", ()),
                                ({"since": "7d", "tenant": "acme"}, "AND tenant = ?", ("acme",)),
                                ({"since": "30d", "tenant": "globex", "feature": "search"},
                                 "AND tenant = ? AND feature = ?", ("globex", "search")),
                                ({"since": "24h"}, "", ())]:
        f = queries.parse_filters(params, now=NOW + 1)
        got = queries.overview(store, f)
        calls, cost, ok, exact = store.query(
            "SELECT COUNT(*), SUM(cost_usd), SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN cache = 'exact' THEN 1 ELSE 0 END) FROM calls WHERE ts >= ? AND ts < ? {where}",
            (int(f.since // 3600) * 3600, f.until, *args))[0]
        t = got["totals"]
        assert t["calls"] == calls and t["ok"] == ok and t["exact_hits"] == exact, params
        assert t["cost_usd"] == pytest.approx(cost or 0) and t["cost_per_success_usd"] == pytest.approx((cost or 0) / ok)
        assert sum(got["series"]["calls"]) == calls
        assert sum(r["calls"] for r in got["breakdowns"]["model"]) == calls
        assert sum(map(sum, got["stacked"]["feature"]["spend"])) == pytest.approx(cost or 0)
    assert got["span"] == "h" and len(got["buckets"]) == 25
    assert queries.overview(store, queries.parse_filters({"since": "30d"}, now=NOW + 1))["span"] == "d"


def test_the_calls_behind_a_chart_page_by_page(store, monkeypatch):
    monkeypatch.setattr(queries, "SCAN_ROWS", 97)  # many short windows
    f = queries.parse_filters({"since": "7d", "tenant": "acme"}, now=NOW + 1)
    over = queries.overview(store, f)
    for dim, key in [("model", "gpt-4o"), ("status", "error"), ("lever", "router"), ("route", "support:cheap"),
                     ("all", "")]:
        counted = next((r["calls"] for r in over["breakdowns"].get(dim, []) if r["key"] == key), over["totals"]["calls"])
        seen, cursor, pages = [], None, 0
        while True:
            page = queries.calls(store, f, dim, key, after=cursor, limit=20)
            seen += [c["request_id"] for c in page["calls"]]
            assert all(c["tenant"] == "acme" for c in page["calls"])
            assert [c["ts"] for c in page["calls"]] == sorted((c["ts"] for c in page["calls"]), reverse=True)
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == counted > 0, (dim, key)
        assert pages > 1


def test_bad_filters_are_refused():
    for params in ({"since": "yesterday"}, {"since": "500d"}, {"since": "2026-01-02", "until": "2026-01-01"}):
        with pytest.raises(queries.BadQuery):
            queries.parse_filters(params)
