"""Top prompts by spend in the dashboard's overview (SQLite and PostgreSQL): ledger traffic with some of its calls in
the request log (written by the log's own writer, redaction on), grouped by template with the spend the ledger has
for them; the calls behind a template, page by page, are exactly those counted; a hit scan cap is said; without a
log the answer names the features to log."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from scrimp.canonical import ChatRequest
from scrimp.dashboard import prompts, queries
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import RequestLogStore
from scrimp.requestlog.writer import Limits, Pending, RequestLogWriter
from tests.dashboard.traffic import write_traffic

NOW = time.time()
TICKET, REFUND, ORDER = "Summarise ticket <n> for <email>", "What is the refund policy?", "Find documents about order <n>"


def prompt_for(i: int, feature: str) -> tuple[str, str]:
    """(prompt sent, its template as written by hand)."""
    if feature == "search":
        return f"Find documents about order {1000 + i}", ORDER
    if i % 3 == 0:
        return "What is the refund policy?", REFUND
    return f"Summarise ticket {i} for user{i}@example.com", TICKET  # the e-mail is redacted in the log


@pytest.fixture
def store(backend):
    s = backend()
    s.batch_window_s = 0.0
    s.start()
    write_traffic(s, 600, seed=11, days=3, now=NOW)
    s.flush()
    yield s
    s.close()


@pytest.fixture
def logged(store):
    """Log the support and search calls (as the request_log stage would); returns the expected groups per call."""
    calls = store.query("SELECT ts, request_id, tenant, feature, cost_usd, requested_model FROM calls "
                        "WHERE feature IN ('support', 'search') ORDER BY ts")
    writer = RequestLogWriter(RequestLogStore.of_ledger(store), Redactor([], [], True, "[REDACTED]"),
                              Limits(retention_s=None, max_rows_per_tenant=None), clock=lambda: NOW)
    writer.start()
    expected = []
    for i, (ts, rid, tenant, feature, cost, model) in enumerate(calls):
        text, tmpl = prompt_for(i, feature)
        request = ChatRequest(model=model, messages=[{"role": "user", "content": [{"type": "text", "text": text}]}])
        writer.submit(Pending({"ts": ts, "request_id": rid, "tenant": tenant, "feature": feature, "user_id": "u",
                               "key_id": None, "inbound": "openai", "requested_model": model, "served_model": model,
                               "cache": "miss", "stream": 0, "status": "ok"}, request, None))
        expected.append({"ts": ts, "request_id": rid, "tenant": tenant, "feature": feature, "cost": cost,
                         "template": tmpl})
    writer.flush()
    writer.close()
    return expected


def groups(expected, **where) -> dict[tuple[str, str], tuple[int, float]]:
    out: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0])
    for e in expected:
        if all(e[k] == v for k, v in where.items()):
            out[(e["feature"], e["template"])][0] += 1
            out[(e["feature"], e["template"])][1] += e["cost"]
    return {k: (n, usd) for k, (n, usd) in out.items()}


def test_top_prompts_by_spend_equal_the_ledger_for_each_filter(store, logged):
    for params, where in [({"since": "7d"}, {}), ({"since": "7d", "tenant": "acme"}, {"tenant": "acme"}),
                          ({"since": "7d", "tenant": "globex", "feature": "support"},
                           {"tenant": "globex", "feature": "support"})]:
        over = queries.overview(store, queries.parse_filters(params, now=NOW + 1))
        p, total = over["prompts"], over["totals"]["cost_usd"]
        want = groups(logged, **where)
        assert p["logged"] and not p["capped"], params
        assert {(r["feature"], r["template"]): (r["calls"], r["cost_usd"]) for r in p["rows"]} == {
            k: (n, pytest.approx(usd)) for k, (n, usd) in want.items()}, params
        assert [r["cost_usd"] for r in p["rows"]] == sorted((r["cost_usd"] for r in p["rows"]), reverse=True)
        for r in p["rows"]:
            assert r["share"] == pytest.approx(r["cost_usd"] / total)
        assert p["calls"] == sum(n for n, _ in want.values())
        # "summary" (and calls without a feature) have spend but no logged call: named for the hint
        assert p["unlogged_features"] == ([] if "feature" in where else ["summary"]), params


def test_the_calls_behind_a_template_page_by_page(store, logged, monkeypatch):
    monkeypatch.setattr(queries, "SCAN_ROWS", 97)  # many short windows of the ledger
    f = queries.parse_filters({"since": "7d", "feature": "support"}, now=NOW + 1)
    for tmpl in (TICKET, REFUND):
        seen, cursor = [], None
        while True:
            page = queries.calls(store, f, "template", tmpl, after=cursor, limit=20)
            seen += [c["request_id"] for c in page["calls"]]
            assert all(c["feature"] == "support" for c in page["calls"])
            cursor = page["next"]
            if cursor is None:
                break
        want = [e["request_id"] for e in logged if e["feature"] == "support" and e["template"] == tmpl]
        assert len(seen) == len(set(seen)) and set(seen) == set(want) and want
        row = next(r for r in queries.overview(store, f)["prompts"]["rows"] if r["template"] == tmpl)
        assert row["calls"] == len(seen)  # the table's count and its link agree


def test_a_hit_scan_cap_is_said(store, logged, monkeypatch):
    monkeypatch.setattr(prompts, "SCAN_ROWS", 50)
    p = queries.overview(store, queries.parse_filters({"since": "7d"}, now=NOW + 1))["prompts"]
    newest = sorted(logged, key=lambda e: -e["ts"])[:50]
    assert p["capped"] and p["scanned"] == 50 and p["scan_cap"] == 50 and p["calls"] == 50
    assert p["covered_since"] == pytest.approx(newest[-1]["ts"])
    assert p["cost_usd"] == pytest.approx(sum(e["cost"] for e in newest))


def test_without_a_request_log_the_answer_names_the_features_to_log(store):
    over = queries.overview(store, queries.parse_filters({"since": "7d"}, now=NOW + 1))
    p = over["prompts"]
    assert not p["logged"] and p["rows"] == [] and p["calls"] == 0
    by_spend = [r["key"] for r in over["breakdowns"]["feature"] if r["key"] != "-"]
    assert p["unlogged_features"] == by_spend and set(by_spend) == {"support", "search", "summary"}
    page = queries.calls(store, queries.parse_filters({"since": "7d"}, now=NOW + 1), "template", REFUND)
    assert page == {"calls": [], "next": None, "scanned": 0}
