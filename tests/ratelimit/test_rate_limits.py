"""Rate limits through the gateway with the official SDKs against the simulator, over SQLite and a real Redis
(SCRIMP_TEST_REDIS_URL, default redis://127.0.0.1:6379/0; each test its own key prefix)."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.shared_counters import Counter, open_counter_store
from scrimp.sim.testing import run_simulator, serve_app

REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROMPT = "Say hello to request number {:03d} please"


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as (url, _app):
        yield url


@pytest.fixture
def prefix():
    p = f"scrimp-test-ratelimit-{uuid.uuid4().hex[:10]}:"
    yield p
    import redis

    r = redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=p + "*"))
    if keys:
        r.delete(*keys)


def state(backend: str, tmp_path, prefix: str) -> dict[str, Any]:
    return {"redis_url": REDIS_URL, "prefix": prefix} if backend == "redis" else {"path": str(tmp_path / "rl.db")}


@contextlib.contextmanager
def gateway(sim_url: str, tmp_path, limits: list[dict[str, Any]], st: dict[str, Any]):
    stages = [{"name": "ledger", "path": str(tmp_path / f"ledger-{uuid.uuid4().hex[:6]}.db")},
              {"name": "rate_limits", "limits": limits, **st}]
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        yield url, app


def client(url: str, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0,
                         default_headers={"x-scrimp-tenant": tenant})


def ask(c: openai.OpenAI, i: int, max_tokens: int = 5, **kw: Any) -> Any:
    return c.chat.completions.create(model="gpt-4o-mini", max_tokens=max_tokens,
                                     messages=[{"role": "user", "content": PROMPT.format(i)}], **kw)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_requests_per_minute_per_tenant_429_with_retry_after_in_each_shape(sim, tmp_path, prefix, backend):
    with gateway(sim, tmp_path, [{"per": "tenant", "rpm": 2}], state(backend, tmp_path, prefix)) as (url, _app):
        acme = client(url, "acme")
        ask(acme, 1)
        ask(acme, 2, stream=True).close()  # a stream counts as one request too
        with pytest.raises(openai.RateLimitError) as err:
            ask(acme, 3)
        body = err.value.body
        assert body["code"] == "rate_limit_exceeded"
        assert "tenant acme" in body["message"] and "2 requests per minute" in body["message"]
        # the window is a minute and the first request was counted moments ago
        assert 50 <= int(err.value.response.headers["retry-after"]) <= 60
        ask(client(url, "globex"), 4)  # each tenant its own counter
        claude = anthropic.Anthropic(base_url=url, api_key="any", max_retries=0,
                                     default_headers={"x-scrimp-tenant": "acme"})
        with pytest.raises(anthropic.RateLimitError) as aerr:
            claude.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert aerr.value.body["error"]["type"] == "rate_limit_error"
        assert "tenant acme" in aerr.value.body["error"]["message"]
        assert 50 <= int(aerr.value.response.headers["retry-after"]) <= 60
        metrics = httpx.get(url + "/metrics").text
        assert 'scrimp_rate_limited_total{per="tenant",limit="requests"} 2' in metrics


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_tokens_per_minute_count_what_was_really_used(sim, tmp_path, prefix, backend):
    limits = [{"per": "tenant", "tpm": 600}]
    with gateway(sim, tmp_path, limits, state(backend, tmp_path, prefix)) as (url, _app):
        acme = client(url, "acme")
        with pytest.raises(openai.RateLimitError) as err:
            ask(acme, 1, max_tokens=1000)  # input + 1000 reserved output can never fit in 600 per minute
        assert "more than the 600 tokens per minute" in err.value.body["message"]
        # Each call reserves input + 200 tokens, then counts what the simulator answered (~100 output tokens,
        # cut to 200 at most). Reading the real usage back tells how many calls fit.
        used = []
        for i in range(10):
            try:
                r = ask(acme, 10 + i, max_tokens=200)
            except openai.RateLimitError as exc:
                assert "600 tokens per minute" in exc.body["message"]
                break
            used.append(r.usage.prompt_tokens + r.usage.completion_tokens)
        else:
            pytest.fail("the token limit never refused")
        reserve_next = r.usage.prompt_tokens + 200  # the refused call's reservation (prompts of one length)
        assert sum(used) <= 600
        # refused only because the settled usage plus this reservation passed the limit: the reservations
        # of earlier calls were released down to their real usage (or fewer calls would have fitted)
        assert sum(used) + reserve_next > 600
        assert len(used) > 600 // (r.usage.prompt_tokens + 200)


def test_two_gateways_share_one_redis_counter_per_key(sim, tmp_path, prefix):
    st = state("redis", tmp_path, prefix)
    limits = [{"per": "key", "rpm": 3}]
    with gateway(sim, tmp_path, limits, st) as (url_a, _), gateway(sim, tmp_path, limits, st) as (url_b, _):
        a = openai.OpenAI(base_url=url_a + "/v1", api_key="caller-one", max_retries=0)
        b = openai.OpenAI(base_url=url_b + "/v1", api_key="caller-one", max_retries=0)
        ask(a, 1)
        ask(b, 2)
        ask(a, 3)
        with pytest.raises(openai.RateLimitError):
            ask(b, 4)
        with pytest.raises(openai.RateLimitError):
            ask(a, 5)
        # naming another tenant does not make the same caller key another key
        renamed = openai.OpenAI(base_url=url_a + "/v1", api_key="caller-one", max_retries=0,
                                default_headers={"x-scrimp-tenant": "someone-else"})
        with pytest.raises(openai.RateLimitError):
            ask(renamed, 7)
        # another caller (another provider key: another derived tenant and key) is not held back
        ask(openai.OpenAI(base_url=url_b + "/v1", api_key="caller-two", max_retries=0), 6)


def test_per_key_limits_tell_keys_of_one_tenant_apart(make_gateway_auth):
    gw = make_gateway_auth
    one, two = gw.key("acme"), gw.key("acme")
    c1, c2 = gw.openai(one), gw.openai(two)
    ask(c1, 1)
    with pytest.raises(openai.RateLimitError) as err:
        ask(c1, 2)
    assert "key " in err.value.body["message"]
    ask(c2, 3)  # the same tenant's other key has its own counter


@pytest.fixture
def make_gateway_auth(sim, tmp_path):
    from scrimp.auth.options import AuthOptions
    from scrimp.options import Where, parse_options

    stages = [{"name": "ledger", "path": str(tmp_path / "ledger.db")},
              {"name": "rate_limits", "limits": [{"per": "key", "rpm": 1}], "path": str(tmp_path / "rl.db")}]
    config = simulated(sim, stages=stages)
    config.auth = parse_options(AuthOptions, {"required": True, "admin_key": "admin-" + "x" * 20},
                                Where(path="auth"))
    app = create_app(config)

    class GW:
        def key(self, tenant: str) -> str:
            secret, _ = app.state.gateway.auth.resolver.store.create(tenant)
            return secret

        def openai(self, key: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    gw = GW()
    with serve_app(app) as url:
        gw.url = url
        yield gw


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_retry_after_is_when_enough_usage_leaves_the_window(tmp_path, prefix, backend):
    store = open_counter_store(REDIS_URL if backend == "redis" else None, prefix, str(tmp_path / "c.db"))
    c = Counter("t:tpm", 100, 60.0, 600)
    try:
        for t, amount in ((1000.0, 30), (1010.0, 30), (1020.0, 30)):
            assert (await store.reserve([c], f"r{t}", amount, t, 600)).ok
            await store.settle([c], f"r{t}", amount, t)
        refused = await store.reserve([c], "x", 40, 1030.0, 600)  # 90 used; 40 fits once the first 30 leaves
        assert not refused.ok and refused.retry_after_s == pytest.approx(1000 + 60 - 1030)
        refused = await store.reserve([c], "y", 65, 1030.0, 600)  # needs the first two entries gone
        assert refused.retry_after_s == pytest.approx(1010 + 60 - 1030)
        assert (await store.reserve([c], "z", 40, 1060.5, 600)).ok  # the first entry has left
    finally:
        await store.close()


def test_config_refuses_a_limit_without_rpm_or_tpm(sim, tmp_path):
    from scrimp.options import ConfigError

    with pytest.raises(ConfigError, match="rpm, tpm or both"):
        create_app(simulated(sim, stages=[{"name": "rate_limits", "limits": [{"per": "tenant"}]}]))
