"""Spend and savings per feature and lever on GET /metrics, equal to the ledger, and the shipped Grafana dashboard
asks only for metrics the gateway exports (calls through the gateway with the openai SDK)."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

import httpx
import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.fullmatch(r"([a-z_:]+)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def settled(store) -> None:
    """Wait until the shadow calls (made in the background, rows of their own) are all written."""
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        store.flush()
        n = store.query("SELECT COUNT(*) FROM calls")[0][0] + store.query("SELECT COUNT(*) FROM shadow")[0][0]
        if n != seen:
            seen, stable_since = n, time.monotonic()
        time.sleep(0.1)


def value(metrics, name: str, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    stages = [
        {"name": "ledger", "path": str(tmp / "ledger.db")},
        {"name": "exact_cache", "backend": "sqlite", "path": str(tmp / "cache.db")},
        {"name": "router", "routes": {"support": {
            "policy": "rules", "default": "gpt-4o-mini", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
            "rules": [{"if": {"keywords_any": ["refund"]}, "model": "gpt-4o"}],
            "shadow": {"share": 1.0, "scorer": "exact", "max_usd_per_day": 1.0}, "drift": {"min_samples": 5}}}},
        {"name": "budgets", "path": str(tmp / "budgets.db"), "budgets": [{"name": "daily", "limit_usd": 100, "period": "day"}]},
    ]
    with run_simulator() as (sim_url, _sim):
        app = create_app(simulated(sim_url, stages=stages))
        with serve_app(app) as url:
            yield url, app


def test_spend_and_savings_per_feature_and_lever_match_the_ledger(gateway):
    url, app = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", default_headers={"x-scrimp-feature": "support"})
    for text in ("where is my parcel", "where is my parcel", "I want a refund"):  # the second: an exact-cache hit
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], temperature=0)
    other = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", default_headers={"x-scrimp-feature": "summary"})
    other.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sum up: a b c"}])
    store = app.state.gateway.ledger
    settled(store)
    m = parse_metrics(httpx.get(url + "/metrics").text)
    rows = store.query("SELECT feature, COALESCE(served_model, requested_model), SUM(cost_usd), SUM(saved_usd), "
                       "COUNT(*) FROM calls GROUP BY 1, 2")
    assert rows
    for feature, model, cost, saved, n in rows:
        assert value(m, "scrimp_ledger_spend_usd_total", feature=feature, model=model) == pytest.approx(cost)
    for feature in ("support", "summary"):
        saved, n = store.query("SELECT SUM(saved_usd), COUNT(*) FROM calls WHERE feature = ?", (feature,))[0]
        assert value(m, "scrimp_ledger_saved_usd_total", feature=feature) == pytest.approx(saved, abs=1e-12)
        assert sum(v for (name, labels), v in m.items() if name == "scrimp_ledger_calls_total"
                   and ("feature", feature) in labels) == n
    # the exact-cache hit and the routed call: saving records per lever, as the savings table has them
    for lever, usd in store.query("SELECT lever, SUM(usd) FROM savings WHERE kind = 'saving' AND feature = 'support' "
                                  "GROUP BY lever"):
        assert value(m, "scrimp_lever_saved_usd_total", lever=lever, feature="support") == pytest.approx(usd)
    levers = {dict(labels)["lever"] for (name, labels) in m if name == "scrimp_lever_saved_usd_total"}
    assert {"exact_cache", "router"} <= levers
    assert value(m, "scrimp_ledger_cache_hits_total", feature="support", kind="exact") == 1


def test_the_grafana_dashboard_queries_only_exported_metrics(gateway):
    url, _app = gateway
    text = resources.files("scrimp.dashboard").joinpath("grafana.json").read_text()
    dash = json.loads(text)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs.append(dash["templating"]["list"][0]["definition"])
    named = {n for e in exprs for n in re.findall(r"\bscrimp_[a-z0-9_]+", e)}
    exported = {name for name, _ in parse_metrics(httpx.get(url + "/metrics").text)}
    assert len(named) >= 10
    assert named <= exported, sorted(named - exported)
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dash["panels"])  # importable anywhere
