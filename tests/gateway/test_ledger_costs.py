"""Every call through the gateway is recorded with exact tokens and prices (checked field by field)."""

from __future__ import annotations

import anthropic
import openai
import pytest

# USD per million tokens, as the providers publish them (openai.com/api/pricing, anthropic.com/pricing):
# input, output, cache read, 5-minute cache write, 1-hour cache write. Written here by hand, so the ledger's
# prices are checked against the price lists, not against the code that computes them.
PER_MTOK = {
    "gpt-4o-mini": (0.15, 0.60, 0.075, 0.15, 0.15),  # OpenAI: no write premium
    "gpt-4o": (2.50, 10.00, 1.25, 2.50, 2.50),
    "claude-sonnet-4-6": (3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-haiku-4-5": (1.00, 5.00, 0.10, 1.25, 2.00),
}


def by_hand(model, input=0, output=0, cache_read=0, write_5m=0, write_1h=0):
    i, o, r, w5, w1 = PER_MTOK[model]
    return (input * i + output * o + cache_read * r + write_5m * w5 + write_1h * w1) / 1e6


LONG = " ".join(f"section{i % 60} text" for i in range(1200))  # ~2400 tokens


def oa(gw, **kw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="key-a", max_retries=0, **kw)


def an(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key="key-a", max_retries=0)


def test_plain_openai_call_row_matches_usage_and_price(gw):
    raw = oa(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}], max_tokens=30,
        extra_headers={"x-scrimp-feature": "greeting", "x-scrimp-user": "u1", "x-scrimp-tenant": "acme"})
    r = raw.parse()
    (row,) = gw.rows()
    expected = by_hand("gpt-4o-mini", input=r.usage.prompt_tokens, output=r.usage.completion_tokens)
    assert row["tenant"] == "acme" and row["feature"] == "greeting" and row["user_id"] == "u1"
    assert row["requested_model"] == row["served_model"] == "gpt-4o-mini" and row["provider"] == "openai"
    assert row["input_tokens"] == r.usage.prompt_tokens and row["output_tokens"] == r.usage.completion_tokens
    assert row["cache_read_tokens"] == 0 and row["status"] == "ok" and row["cache"] == "miss"
    assert row["cost_usd"] == pytest.approx(expected) and row["baseline_usd"] == pytest.approx(expected)
    assert float(raw.headers["x-scrimp-cost-usd"]) == pytest.approx(expected, abs=1e-8)
    assert raw.headers["x-scrimp-model"] == "gpt-4o-mini" and raw.headers["x-scrimp-cache"] == "miss"
    assert row["latency_ms"] > 0


def test_openai_cached_prefix_is_part_of_prompt_tokens(gw):
    c = oa(gw)
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]
    c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5)
    second = c.chat.completions.create(model="gpt-4o", messages=msgs + [{"role": "user", "content": "again"}],
                                       max_tokens=5)
    row = gw.rows()[1]
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 1024
    assert row["cache_read_tokens"] == cached and row["input_tokens"] == second.usage.prompt_tokens - cached
    expected = by_hand("gpt-4o", input=second.usage.prompt_tokens - cached, cache_read=cached,
                       output=second.usage.completion_tokens)
    assert row["cost_usd"] == pytest.approx(expected)
    assert row["cost_usd"] < by_hand("gpt-4o", input=second.usage.prompt_tokens, output=second.usage.completion_tokens)


@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_anthropic_cache_writes_and_reads_are_on_top_of_input(gw, ttl):
    c = an(gw)
    system = [{"type": "text", "text": LONG + ttl, "cache_control": {"type": "ephemeral", "ttl": ttl}}]
    first = c.messages.create(model="claude-sonnet-4-6", max_tokens=5, system=system,
                              messages=[{"role": "user", "content": "one"}])
    second = c.messages.create(model="claude-sonnet-4-6", max_tokens=5, system=system,
                               messages=[{"role": "user", "content": "two"}])
    w, r = gw.rows()
    written = first.usage.cache_creation_input_tokens
    assert written > 0 and second.usage.cache_read_input_tokens == written
    assert w["input_tokens"] == first.usage.input_tokens
    assert w[f"cache_write_{ttl}_tokens"] == written
    assert w["cache_write_5m_tokens" if ttl == "1h" else "cache_write_1h_tokens"] == 0
    assert r["cache_read_tokens"] == written and r["input_tokens"] == second.usage.input_tokens
    assert w["cost_usd"] == pytest.approx(by_hand("claude-sonnet-4-6", input=first.usage.input_tokens,
                                                  output=first.usage.output_tokens, **{f"write_{ttl}": written}))
    assert r["cost_usd"] == pytest.approx(by_hand("claude-sonnet-4-6", input=second.usage.input_tokens,
                                                  output=second.usage.output_tokens, cache_read=written))


def test_stream_without_include_usage_is_still_priced_from_real_usage(gw):
    c = oa(gw)
    plain = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}],
                                      max_tokens=40)
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", max_tokens=40, stream=True,
                                            messages=[{"role": "user", "content": "tell me"}]))
    assert all(ch.usage is None for ch in chunks)  # the client did not ask: usage stripped
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == plain.choices[0].message.content
    row = gw.rows()[1]
    assert row["stream"] == 1 and row["status"] == "ok"
    assert row["input_tokens"] == plain.usage.prompt_tokens and row["output_tokens"] == plain.usage.completion_tokens
    assert row["cost_usd"] == pytest.approx(gw.rows()[0]["cost_usd"])
    assert row["ttft_ms"] is not None


def test_stream_with_include_usage_passes_usage_through(gw):
    chunks = list(oa(gw).chat.completions.create(model="gpt-4o-mini", max_tokens=20, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "x"}]))
    assert chunks[-1].usage.completion_tokens == gw.rows()[0]["output_tokens"]


def test_anthropic_stream_is_recorded(gw):
    with an(gw).messages.stream(model="claude-haiku-4-5", max_tokens=30,
                                messages=[{"role": "user", "content": "stream it"}]) as s:
        final = s.get_final_message()
    (row,) = gw.rows()
    assert row["output_tokens"] == final.usage.output_tokens and row["input_tokens"] == final.usage.input_tokens
    assert row["cost_usd"] == pytest.approx(by_hand("claude-haiku-4-5", input=final.usage.input_tokens,
                                                    output=final.usage.output_tokens))


def test_exact_cache_hit_costs_nothing_and_saves_the_original_price(gw):
    c = oa(gw)
    ask = {"model": "gpt-4o", "temperature": 0, "max_tokens": 30, "messages": [{"role": "user", "content": "Name a colour."}]}
    first = c.chat.completions.create(**ask)
    hit = c.chat.completions.with_raw_response.create(**ask)
    original = by_hand("gpt-4o", input=first.usage.prompt_tokens, output=first.usage.completion_tokens)
    _, row = gw.rows()
    assert row["cache"] == "exact" and row["cost_usd"] == 0
    assert row["baseline_usd"] == pytest.approx(original) and row["saved_usd"] == pytest.approx(original)
    assert float(hit.headers["x-scrimp-saved-usd"]) == pytest.approx(original, abs=1e-8)
    store = gw.gateway.ledger
    (lever, kind, usd), = store.query("SELECT lever, kind, usd FROM savings")
    assert (lever, kind) == ("exact_cache", "saving") and usd == pytest.approx(original)
