"""Budgets through the gateway with the official SDKs against the simulator, over SQLite and a real Redis
(SCRIMP_TEST_REDIS_URL, default redis://127.0.0.1:6379/0; each test its own key prefix)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import uuid
from typing import Any

import anthropic
import openai
import pytest

from scrimp.budgets.stage import BudgetsStage
from scrimp.canonical import ChatRequest
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.pipeline import Call
from scrimp.shared_counters import Counter, RedisCounterStore, SQLiteCounterStore, to_nano
from scrimp.sim.testing import run_simulator, serve_app

REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROMPT = "Say hello to request number {:03d} please"
MAX = 5  # max_tokens: the simulator's replies (~100 tokens) are cut to it, so a call costs its worst case


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as (url, app):
        yield url, app


@pytest.fixture
def prefix():
    p = f"scrimp-test-budget-{uuid.uuid4().hex[:10]}:"
    yield p
    import redis

    r = redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=p + "*"))
    if keys:
        r.delete(*keys)


def state_options(backend: str, tmp_path, prefix: str) -> dict[str, Any]:
    if backend == "redis":
        return {"redis_url": REDIS_URL, "prefix": prefix}
    return {"path": str(tmp_path / "budgets.db")}


@contextlib.contextmanager
def gateway(sim_url: str, tmp_path, budgets: list[dict[str, Any]], state: dict[str, Any], **extra: Any):
    stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{uuid.uuid4().hex[:6]}.db")},
              {"name": "budgets", "budgets": budgets, **state, **extra}]
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        yield url, app


def stage_of(app: Any) -> BudgetsStage:
    return next(s for s in app.state.gateway.stages if isinstance(s, BudgetsStage))


def rows(app: Any) -> list[tuple[Any, ...]]:
    store = app.state.gateway.ledger
    store.flush()
    return store.query("SELECT served_model, cost_usd, status FROM calls ORDER BY ts")


def worst(app: Any, model: str = "gpt-4o-mini", i: int = 0) -> float:
    req = ChatRequest(model=model, messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT.format(i)}]}],
                      max_tokens=MAX)
    return stage_of(app).worst_case(Call(req), model)


def ask(client: openai.OpenAI, i: int, model: str = "gpt-4o-mini", **kw: Any) -> Any:
    return client.chat.completions.create(model=model, max_tokens=MAX,
                                          messages=[{"role": "user", "content": PROMPT.format(i)}], **kw)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_hard_budget_blocks_with_429_in_each_api_shape(sim, tmp_path, prefix, backend):
    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0, "feature": "probe"}],
                 state_options(backend, tmp_path, prefix + "probe:")) as (url, app):
        c = worst(app)
    budget = [{"name": "acme-daily", "limit_usd": 2.5 * c, "tenant": "acme", "period": "day"}]
    with gateway(sim_url, tmp_path, budget, state_options(backend, tmp_path, prefix)) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0,
                               default_headers={"x-scrimp-tenant": "acme"})
        ask(client, 1)
        ask(client, 2)
        with pytest.raises(openai.RateLimitError) as err:
            ask(client, 3)
        body = err.value.body
        assert body["code"] == "budget_exceeded" and body["type"] == "rate_limit_exceeded"
        assert "acme-daily" in body["message"] and "resets at" in body["message"]
        assert int(err.value.response.headers["retry-after"]) <= 86400
        other = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0,
                              default_headers={"x-scrimp-tenant": "globex"})
        ask(other, 4)  # another tenant is not under acme's budget
        claude = anthropic.Anthropic(base_url=url, api_key="any", max_retries=0,
                                     default_headers={"x-scrimp-tenant": "acme"})
        with pytest.raises(anthropic.RateLimitError) as aerr:
            claude.messages.create(model="claude-haiku-4-5", max_tokens=MAX,
                                   messages=[{"role": "user", "content": "hi"}])
        assert aerr.value.body["error"]["type"] == "rate_limit_error"
        assert "acme-daily" in aerr.value.body["error"]["message"]
        # the counter settled to what the ledger charged
        ledger = rows(app)
        [status] = asyncio.run(stage_of(app).status())
        charged = sum(r[1] for r in ledger if r[2] == "ok")
        assert status["budget"] == "acme-daily"
        assert status["reserved_usd"] == 0
        assert status["spent_usd"] == pytest.approx(sum(r[1] for r in ledger[:2]), abs=1e-9)
        assert charged > status["spent_usd"]  # globex's call is not counted
        import httpx

        assert httpx.get(url + "/v1/scrimp/budgets").json() == {"budgets": [status]}
        events = app.state.gateway.ledger.query("SELECT kind, detail FROM events")
        assert any(k == "budget_block" and "acme-daily" in d for k, d in events)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_downgrade_switches_the_model_and_alert_fires(sim, tmp_path, prefix, backend):
    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options(backend, tmp_path, prefix + "probe:")) as (url, app):
        c = worst(app, "gpt-4o")
    budget = [{"name": "summaries", "feature": "summary", "limit_usd": 1.5 * c,
               "actions": [{"do": "alert", "at": 0.5}, {"do": "downgrade", "at": 0.5, "model": "gpt-4o-mini"}]}]
    with gateway(sim_url, tmp_path, budget, state_options(backend, tmp_path, prefix)) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0,
                               default_headers={"x-scrimp-feature": "summary"})
        ask(client, 1, "gpt-4o")
        ask(client, 2, "gpt-4o")
        ask(client, 3, "gpt-4o")
        served = [r[0] for r in rows(app)]
        assert served == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
        import httpx

        text = httpx.get(url + "/metrics").text
        assert 'scrimp_budget_downgrades_total{budget="summaries"} 2' in text
        assert 'scrimp_budget_alerts_total{budget="summaries"} 1' in text
        kinds = [k for (k,) in app.state.gateway.ledger.query("SELECT kind FROM events")]
        assert kinds.count("budget_alert") == 1 and kinds.count("budget_downgrade") == 2


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_concurrent_requests_never_overspend(sim, tmp_path, prefix, backend):
    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options(backend, tmp_path, prefix + "probe:")) as (url, app):
        c = worst(app)
    limit = 10.5 * c
    with gateway(sim_url, tmp_path, [{"name": "tight", "limit_usd": limit, "window_s": 3600}],
                 state_options(backend, tmp_path, prefix)) as (url, app):
        async def run() -> list[Any]:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="any", max_retries=0)

            async def one(i: int, stream: bool) -> Any:
                try:
                    if stream:
                        s = await client.chat.completions.create(
                            model="gpt-4o-mini", max_tokens=MAX, stream=True,
                            messages=[{"role": "user", "content": PROMPT.format(i)}])
                        async for _ in s:
                            pass
                        return "ok"
                    await client.chat.completions.create(model="gpt-4o-mini", max_tokens=MAX,
                                                         messages=[{"role": "user", "content": PROMPT.format(i)}])
                    return "ok"
                except openai.RateLimitError:
                    return "blocked"

            return await asyncio.gather(*(one(i, i % 3 == 0) for i in range(50)))

        results = asyncio.run(run())
        ledger = rows(app)
        spent = sum(r[1] for r in ledger)
        assert results.count("ok") >= 10  # every request that fitted went through
        assert spent <= limit + 1e-12  # reserved at the worst case: never over
        [status] = asyncio.run(stage_of(app).status())
        assert status["spent_usd"] == pytest.approx(spent, abs=1e-9) and status["reserved_usd"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_crashed_calls_reservation_expires(sim, tmp_path, prefix, backend):
    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options(backend, tmp_path, prefix + "probe:")) as (url, app):
        c = worst(app)
    with gateway(sim_url, tmp_path, [{"name": "small", "limit_usd": 1.5 * c}],
                 state_options(backend, tmp_path, prefix), reservation_ttl_s=1.0) as (url, app):
        stage = stage_of(app)
        call = Call(ChatRequest(model="gpt-4o-mini", messages=[]))
        [scoped] = stage.scoped(call, stage.budgets_for(call), time.time())
        # a replica reserved and died before settling

        async def crash() -> Any:
            store = stage.new_store()
            try:
                return await store.reserve([scoped.counter], "req_crashed", to_nano(c), time.time(), 1.0)
            finally:
                await store.close()

        reserved = asyncio.run(crash())
        assert reserved.ok
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            ask(client, 1)
        time.sleep(1.1)
        ask(client, 2)  # the crashed reservation stopped counting


def test_two_gateways_share_one_redis_counter(sim, tmp_path, prefix):
    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options("redis", tmp_path, prefix + "probe:")) as (_url, app):
        c = worst(app)
    state = state_options("redis", tmp_path, prefix)
    budget = [{"name": "shared", "limit_usd": 2.5 * c, "per": ["tenant"]}]
    with gateway(sim_url, tmp_path, budget, state) as (url_a, _), gateway(sim_url, tmp_path, budget, state) as (url_b, _):
        a = openai.OpenAI(base_url=url_a + "/v1", api_key="any", max_retries=0)
        b = openai.OpenAI(base_url=url_b + "/v1", api_key="any", max_retries=0)
        ask(a, 1)
        ask(b, 2)
        with pytest.raises(openai.RateLimitError) as err:
            ask(a, 3)
        assert "shared (tenant=" in err.value.body["message"]
        with pytest.raises(openai.RateLimitError):
            ask(b, 4)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_store_reserve_settle_and_expiry(tmp_path, prefix, backend):
    store = (RedisCounterStore(REDIS_URL, prefix) if backend == "redis"
             else SQLiteCounterStore(str(tmp_path / "b.db")))
    day = Counter("d::2026-11-27", 100, None, 3600)
    window = Counter("w::w", 100, 10.0, 3600)
    try:
        for counter in (day, window):
            assert (await store.reserve([counter], "r1", 60, 1000.0, 5.0)).ok
            refused = await store.reserve([counter], "r2", 60, 1000.0, 5.0)
            assert not refused.ok and refused.refused == 0 and refused.used == [(0, 60)]
            await store.settle([counter], "r1", 30, 1001.0)
            assert await store.read([counter], 1001.0) == [(30, 0)]
            assert (await store.reserve([counter], "r3", 70, 1001.0, 5.0)).ok
            assert await store.read([counter], 1007.0) == [(30, 0)]  # r3 expired unsettled
        assert await store.read([window], 1012.0) == [(0, 0)]  # the spend left the rolling window
        assert await store.read([day], 1012.0) == [(30, 0)]
    finally:
        await store.close()


def test_a_keys_stored_budget_is_enforced(sim, tmp_path, prefix):
    from scrimp.auth.keys import new_secret
    from scrimp.auth.options import AuthOptions
    from scrimp.options import Where, parse_options

    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options("redis", tmp_path, prefix + "probe:")) as (_url, app):
        c = worst(app)
    secret = new_secret()
    stages = [{"name": "ledger", "path": str(tmp_path / "ledger-key.db")},
              {"name": "budgets", **state_options("redis", tmp_path, prefix)}]
    config = simulated(sim_url, stages=stages)
    admin = "admin-" + new_secret()
    config.auth = parse_options(AuthOptions, {"required": True, "admin_key": admin, "keys": [
        {"key": secret, "tenant": "acme", "id": "cfg_billing", "budget_usd": 1.5 * c, "period": "month"}]},
        Where())
    with serve_app(create_app(config)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
        ask(client, 1)
        with pytest.raises(openai.RateLimitError) as err:
            ask(client, 2)
        assert "key-cfg_billing" in err.value.body["message"]
        import httpx

        assert httpx.get(url + "/v1/scrimp/budgets", headers={"authorization": f"Bearer {secret}"}).status_code != 200
        listed = httpx.get(url + "/v1/scrimp/budgets", headers={"authorization": f"Bearer {admin}"})
        assert listed.status_code == 200
        [row] = listed.json()["budgets"]  # the key's own budget, beside the configured ones (none here)
        assert row["budget"] == "key-cfg_billing" and row["period"] == "month"
        assert row["limit_usd"] == pytest.approx(1.5 * c) and row["spent_usd"] == pytest.approx(c, abs=1e-9)


def test_scrimp_budgets_lists_spent_reserved_remaining(tmp_path, prefix):
    import json

    from click.testing import CliRunner

    from scrimp.cli import main

    cfg = tmp_path / "scrimp.yaml"
    cfg.write_text(f"""
stages:
  - name: budgets
    redis_url: "{REDIS_URL}"
    prefix: "{prefix}"
    budgets:
      - {{name: acme-daily, tenant: acme, limit_usd: 1.0}}
      - {{name: per-tenant, per: [tenant], limit_usd: 2.0, period: month}}
""")
    store = RedisCounterStore(REDIS_URL, prefix)
    from scrimp.budgets.stage import period_bounds

    now = time.time()
    day = period_bounds(type("B", (), {"window_s": None, "period": "day"})(), now)[0]
    month = period_bounds(type("B", (), {"window_s": None, "period": "month"})(), now)[0]

    async def spend() -> None:
        try:
            await store.reserve([Counter(f"acme-daily::{day}", None, None, 3600)], "r1", to_nano(0.25), now, 60)
            await store.settle([Counter(f"per-tenant:tenant=globex:{month}", None, None, 3600)], "r2",
                               to_nano(0.5), now)
        finally:
            await store.close()

    asyncio.run(spend())
    out = CliRunner().invoke(main, ["budgets", "--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["budget"]: r for r in map(json.loads, out.output.splitlines())}
    assert rows["acme-daily"]["reserved_usd"] == 0.25 and rows["acme-daily"]["remaining_usd"] == 0.75
    assert rows["per-tenant"]["scope"] == "tenant=globex" and rows["per-tenant"]["spent_usd"] == 0.5
    table = CliRunner().invoke(main, ["budgets", "--config", str(cfg)])
    assert "acme-daily" in table.output and "tenant=globex" in table.output


def test_scrimp_budgets_lists_the_budgets_stored_with_keys(tmp_path, prefix):
    import json

    from click.testing import CliRunner

    from scrimp.auth.keys import KeyStore
    from scrimp.cli import main
    from scrimp.ledger.store import open_store

    ledger = tmp_path / "ledger.db"
    keys = KeyStore.of_ledger(open_store({"path": str(ledger)}))
    _secret, rec = keys.create("acme", budget_usd=3.0, budget_period="day")
    _other, revoked = keys.create("acme", budget_usd=9.0, budget_period="month")
    keys.revoke(revoked.id)
    keys.create("acme")  # no budget
    keys.close()
    cfg = tmp_path / "scrimp.yaml"
    cfg.write_text(f"""
stages:
  - name: ledger
    path: "{ledger}"
  - name: budgets
    redis_url: "{REDIS_URL}"
    prefix: "{prefix}"
""")
    out = CliRunner().invoke(main, ["budgets", "--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    [row] = [json.loads(line) for line in out.output.splitlines()]
    assert row["budget"] == f"key-{rec.id}" and row["period"] == "day"
    assert row["limit_usd"] == 3.0 and row["spent_usd"] == 0 and row["remaining_usd"] == 3.0


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_abandoned_stream_is_settled(tmp_path, prefix, backend):
    from scrimp.sim.config import ModelConfig, SimConfig

    slow = SimConfig(models={"gpt-4o-mini": ModelConfig("gpt-4o-mini", "openai", per_token_ms=30.0)})
    with run_simulator(slow) as (sim_url, _), gateway(sim_url, tmp_path, [{"name": "all", "limit_usd": 1.0}],
                                                      state_options(backend, tmp_path, prefix)) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o-mini", max_tokens=400, stream=True,
                                                messages=[{"role": "user", "content": "write at length"}])
        for i, _ in enumerate(stream):
            if i == 4:
                break
        stream.close()  # the client hangs up mid-stream
        deadline = time.time() + 10
        while True:
            ledger = rows(app)
            [status] = asyncio.run(stage_of(app).status())
            if (ledger and status["reserved_usd"] == 0) or time.time() > deadline:
                break
            time.sleep(0.1)
        assert status["reserved_usd"] == 0
        assert ledger[-1][2] == "client_cancelled"
        assert 0 < status["spent_usd"] == pytest.approx(ledger[-1][1], abs=1e-9)


def test_a_request_without_max_tokens_reserves_its_features_longest_answer(sim, tmp_path, prefix):
    import json

    sim_url, _ = sim
    ledger = str(tmp_path / "ledger-observed.db")
    budgets = [{"name": "daily", "limit_usd": 100.0}]
    stages = [{"name": "ledger", "path": ledger},
              {"name": "budgets", "budgets": budgets, "path": str(tmp_path / "b.db"),
               "observed_output": {"min_answers": 3, "margin": 1.5}}]

    def reserved(app: Any) -> list[float]:
        store = app.state.gateway.ledger
        store.flush()
        return [json.loads(d)["budget_reserved_usd"] for (d,) in store.query("SELECT decisions FROM calls ORDER BY ts")]

    def call(client: openai.OpenAI, i: int) -> Any:  # no max_tokens
        return client.chat.completions.create(model="gpt-4o-mini", extra_headers={"x-scrimp-feature": "faq"},
                                              messages=[{"role": "user", "content": PROMPT.format(i)}])

    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        answers = [call(client, i) for i in range(4)]
        got = reserved(app)
    inp = answers[0].usage.prompt_tokens  # every prompt has the same length
    longest = max(a.usage.completion_tokens for a in answers[:3])
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens
    assert got[0] == pytest.approx(inp * 0.15e-6 + 4096 * 0.60e-6)  # nothing seen yet: the default 4096
    assert got[3] == pytest.approx(inp * 0.15e-6 + math.ceil(longest * 1.5) * 0.60e-6)
    # a restarted gateway reads the feature's answers back from the ledger: its first call reserves the same
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        call(openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0), 9)
        again = reserved(app)
    longest = max(a.usage.completion_tokens for a in answers)
    assert again[-1] == pytest.approx(inp * 0.15e-6 + math.ceil(longest * 1.5) * 0.60e-6)


def test_alert_webhook_is_signed_retried_and_sent_once_across_replicas(sim, tmp_path, prefix):
    import hashlib
    import hmac
    import json

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers.get("x-scrimp-signature", "")))
        return Response(status_code=500 if len(received) == 1 else 204)  # the first delivery fails

    sim_url, _ = sim
    with gateway(sim_url, tmp_path, [{"name": "probe", "limit_usd": 1.0}],
                 state_options("redis", tmp_path, prefix + "probe:")) as (_url, app):
        c = worst(app)
    with serve_app(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_url:
        budget = [{"name": "team", "limit_usd": 10 * c, "actions": [
            {"do": "alert", "at": 0.25, "webhook": hook_url + "/hook"}, {"do": "block", "at": 1.0}]}]
        st = dict(state_options("redis", tmp_path, prefix), webhook_secret="s3cret")
        with gateway(sim_url, tmp_path, budget, st) as (url_a, _), gateway(sim_url, tmp_path, budget, st) as (url_b, _):
            a = openai.OpenAI(base_url=url_a + "/v1", api_key="any", max_retries=0)
            b = openai.OpenAI(base_url=url_b + "/v1", api_key="any", max_retries=0)
            for i in range(3):  # spent + this reservation reaches 25% on the third call of each replica
                ask(a, i)
                ask(b, 10 + i)
            deadline = time.monotonic() + 10
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # a second replica's alert would arrive by now
    assert len(received) == 2  # one alert: a failed delivery and its retry, from whichever replica reached 25% first
    body, sig = received[1]
    assert sig == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    alert = json.loads(body)
    assert alert["event"] == "budget_alert" and alert["budget"] == "team" and alert["at"] == 0.25
    assert alert["share"] >= 0.25 and received[0][0] == body


def test_a_rolling_budget_alerts_again_in_a_later_window(sim, tmp_path):
    sim_url, _ = sim
    budget = [{"name": "hourly", "limit_usd": 1.0, "window_s": 60, "actions": [{"do": "alert", "at": 0.000001}]}]
    with gateway(sim_url, tmp_path, budget, {"path": str(tmp_path / "b.db")}) as (url, app):
        now = [1_000_020.0]
        app.state.gateway.ctx.clock = lambda: now[0]
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        for t in (1_000_020.0, 1_000_030.0, 1_000_090.0):  # two calls in one minute, one in the next
            now[0] = t
            ask(client, int(t) % 100)
        app.state.gateway.ledger.flush()
        kinds = [k for (k,) in app.state.gateway.ledger.query("SELECT kind FROM events")]
    assert kinds.count("budget_alert") == 2
