"""The exact-match cache through the gateway: hits make no upstream call and never cross tenants."""

from __future__ import annotations

import anthropic
import openai


def ask(gw, key="key-a", tenant=None, stream=False, **kw):
    headers = {"x-scrimp-tenant": tenant} if tenant else {}
    headers.update(kw.pop("headers", {}))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": kw.pop("text", "what is scrimp?")}],
        temperature=kw.pop("temperature", 0), max_tokens=30, stream=stream, extra_headers=headers, **kw)


def test_hit_makes_no_upstream_call_and_records_the_saving(gw):
    first = ask(gw)
    calls = gw.sim_calls()
    second = ask(gw)
    assert gw.sim_calls() == calls
    assert second.headers["x-scrimp-cache"] == "exact"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert float(second.headers["x-scrimp-cost-usd"]) == 0
    assert float(second.headers["x-scrimp-saved-usd"]) == float(first.headers["x-scrimp-cost-usd"]) > 0
    miss, hit = gw.rows()
    assert hit["cache"] == "exact" and hit["saving_stage"] == "exact_cache"
    assert hit["cost_usd"] == 0 and hit["saved_usd"] == miss["cost_usd"]


def test_tenants_never_share_answers(gw):
    ask(gw, tenant="acme")
    calls = gw.sim_calls()
    assert ask(gw, tenant="globex").headers["x-scrimp-cache"] == "miss"
    # With no tenant named, the tenant is a hash of the caller's key: two keys, two caches.
    ask(gw, key="key-one")
    assert ask(gw, key="key-two").headers["x-scrimp-cache"] == "miss"
    assert ask(gw, key="key-one").headers["x-scrimp-cache"] == "exact"
    assert gw.sim_calls() == calls + 3  # globex, key-one and key-two each paid once
    assert all("key-one" not in (r["tenant"] or "") for r in gw.rows())  # never the key itself


def test_only_deterministic_requests_are_cached_by_default(gw):
    ask(gw, temperature=0.7)
    assert ask(gw, temperature=0.7).headers["x-scrimp-cache"] == "miss"
    ask(gw, temperature=0.7, seed=7)
    assert ask(gw, temperature=0.7, seed=7).headers["x-scrimp-cache"] == "exact"


def test_no_cache_and_no_store(gw):
    ask(gw, text="q1", headers={"x-scrimp-cache-control": "no-store"})
    assert ask(gw, text="q1").headers["x-scrimp-cache"] == "miss"  # nothing was stored
    assert ask(gw, text="q1", headers={"x-scrimp-cache-control": "no-cache"}).headers["x-scrimp-cache"] == "miss"
    assert ask(gw, text="q1").headers["x-scrimp-cache"] == "exact"


def test_streamed_requests_hit_and_are_served_as_streams_in_both_formats(gw):
    raw = ask(gw, text="stream me", stream=True)
    first = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    calls = gw.sim_calls()
    again = ask(gw, text="stream me", stream=True)
    assert again.headers["x-scrimp-cache"] == "exact"
    assert "".join(ch.choices[0].delta.content or "" for ch in again.parse() if ch.choices) == first
    a = anthropic.Anthropic(base_url=gw.url, api_key="key-a", max_retries=0)
    params = {"model": "claude-haiku-4-5", "max_tokens": 30, "extra_body": {"temperature": 0},
                  "messages": [{"role": "user", "content": "hi"}]}
    with a.messages.stream(**params) as s:
        text1 = "".join(s.text_stream)
    with a.messages.stream(**params) as s:
        text2 = "".join(s.text_stream)
        assert s.response.headers["x-scrimp-cache"] == "exact"
    assert text1 == text2
    assert gw.sim_calls() == calls + 1
