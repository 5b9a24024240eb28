"""Upstream failures: retries, fallback, clean errors, and clients that hang up mid-stream."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import parse
from scrimp.sim.config import Faults, ModelConfig, SimConfig
from scrimp.sim.testing import run_simulator, serve_app

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
def faulty(tmp_path):
    """A simulator whose models fail in known ways, behind a gateway with fast retries."""
    sim_cfg = SimConfig(models={
        "gpt-4o": ModelConfig("gpt-4o", "openai", faults=Faults(rate_500=1.0)),
        "gpt-4o-mini": ModelConfig("gpt-4o-mini", "openai"),
        "gpt-4.1-mini": ModelConfig("gpt-4.1-mini", "openai", faults=Faults(rate_429=1.0)),
        "claude-haiku-4-5": ModelConfig("claude-haiku-4-5", "anthropic", faults=Faults(rate_529=1.0)),
        "claude-sonnet-4-6": ModelConfig("claude-sonnet-4-6", "anthropic", per_token_ms=30.0),
        "gpt-4.1": ModelConfig("gpt-4.1", "openai", faults=Faults(slow=1.0, slow_ms=3000)),
        "text-embedding-3-small": ModelConfig("text-embedding-3-small", "openai", "cheap", kind="embedding"),
    })
    with run_simulator(sim_cfg) as (sim_url, sim_app):
        models = [
            {"name": "gpt-4o", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k",
             "fallbacks": ["gpt-4o-mini"]},
            {"name": "gpt-4o-mini", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k"},
            {"name": "gpt-4.1-mini", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k"},
            {"name": "claude-haiku-4-5", "provider": "anthropic", "base_url": sim_url, "api_key": "k"},
            {"name": "claude-sonnet-4-6", "provider": "anthropic", "base_url": sim_url, "api_key": "k"},
            {"name": "gpt-4.1", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k"},
            {"name": "text-embedding-3-small", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k"},
        ]
        cfg = parse({"models": models, "upstream": {"retries": 2, "backoff_s": 0.01, "max_backoff_s": 0.05,
                                                    "timeout_s": 0.3},
                     "stages": [{"name": "ledger", "path": str(tmp_path / "l.db")}]})
        app = create_app(cfg)
        with serve_app(app) as url:
            yield url, app, sim_app.state.sim


def rows(app):
    store = app.state.gateway.ledger
    store.flush()
    return store.query("SELECT requested_model, served_model, status, error, decisions FROM calls ORDER BY ts")


def test_failing_model_is_retried_then_falls_back(faulty):
    url, app, sim = faulty
    raw = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, max_tokens=10)
    assert raw.headers["x-scrimp-model"] == "gpt-4o-mini"
    counters = sim.counters.snapshot()["models"]
    assert counters["gpt-4o"]["errors"] == 3  # first try + 2 retries
    assert counters["gpt-4o-mini"]["requests"] == 1
    (row,) = rows(app)
    assert row[0] == "gpt-4o" and row[1] == "gpt-4o-mini" and row[2] == "ok" and '"fallback"' in row[4]


def test_rate_limited_upstream_surfaces_as_429_in_openai_shape(faulty):
    url, _app, sim = faulty
    with pytest.raises(openai.RateLimitError) as exc:
        openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt-4.1-mini", messages=MSG)
    assert exc.value.status_code == 429 and "Rate limit" in exc.value.body["message"]
    assert sim.counters.snapshot()["models"]["gpt-4.1-mini"]["errors"] == 3


def test_overloaded_anthropic_upstream_surfaces_in_anthropic_shape(faulty):
    url, app, _sim = faulty
    with pytest.raises(anthropic.APIStatusError) as exc:
        anthropic.Anthropic(base_url=url, api_key="x", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MSG)
    assert exc.value.status_code == 529
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "overloaded_error"
    assert rows(app)[0][2] == "error"


def test_upstream_timeouts_are_retried_then_surfaced_as_504(faulty):
    url, app, sim = faulty
    with pytest.raises(openai.APIStatusError) as exc:
        openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt-4.1", messages=MSG, max_tokens=5)
    assert exc.value.status_code == 504 and "timed out" in exc.value.body["message"]
    assert sim.counters.snapshot()["models"]["gpt-4.1"]["requests"] == 3  # tried three times
    assert rows(app)[0][2] == "error"
    # the provider still answered (and billed) each attempt: charged to the call, the output estimated at
    # max_tokens (5 tokens at gpt-4.1's $8/M) and the input ("hello" plus message framing, at $2/M)
    store = app.state.gateway.ledger
    (cost, decisions), = store.query("SELECT cost_usd, decisions FROM calls")
    costs = json.loads(decisions)["costs"]
    assert [c["what"].split(";")[0] for c in costs] == [f"attempt {n} timed out" for n in (1, 2, 3)]
    assert all(5 * 8 / 1e6 < c["usd"] < (20 * 2 + 5 * 8) / 1e6 for c in costs)
    assert cost == pytest.approx(sum(c["usd"] for c in costs))
    assert [r[0] for r in store.query("SELECT lever FROM savings WHERE kind = 'cost'")] == ["upstream"] * 3


def test_embeddings_calls_are_ledger_rows(faulty):
    url, app, _sim = faulty
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    r = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one two three", "four"],
                                                   extra_headers={"x-scrimp-feature": "search"})
    tokens = r.parse().usage.prompt_tokens
    store = app.state.gateway.ledger
    store.flush()
    (rid, feature, model, inp, cost, status), = store.query(
        "SELECT request_id, feature, served_model, input_tokens, cost_usd, status FROM calls")
    assert (rid, feature, model, status) == (r.headers["x-scrimp-request-id"], "search", "text-embedding-3-small", "ok")
    assert inp == tokens > 0 and cost == pytest.approx(tokens * 0.02 / 1e6)  # $0.02 per M tokens


def test_client_hanging_up_mid_stream_is_recorded_with_what_was_used(faulty):
    url, app, _sim = faulty
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    stream = client.messages.create(model="claude-sonnet-4-6", max_tokens=400, stream=True,
                                    messages=[{"role": "user", "content": "write at length"}])
    for i, _ in enumerate(stream):
        if i == 4:
            break
    stream.close()
    store = app.state.gateway.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        store.flush()
        got = store.query("SELECT status, input_tokens, output_tokens, cost_usd FROM calls")
        if got:
            break
        time.sleep(0.05)
    (status, inp, out, cost), = got
    assert status == "client_cancelled"
    assert inp > 0 and 0 < out < 400 and cost > 0
