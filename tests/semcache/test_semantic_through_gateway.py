"""The semantic cache through the gateway, with the shipped model, driven by the official SDKs."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai

PARAPHRASES = [
    ("How can I reset my password?", "How do I reset my password?"),
    ("What is the best way to learn Python?", "What's the best way to learn Python?"),
]
NEAR_MISSES = [
    ("Is chocolate safe for dogs?", "Is chocolate safe for cats?"),  # entity
    ("Can I get a refund after 30 days?", "Can I get a refund after 60 days?"),  # number
    ("Why is the sky blue?", "Why isn't the sky blue?"),  # negation
    ("How do I convert 10 miles to kilometers?", "How do I convert 10 kilometers to miles?"),  # swapped units
]


def ask(gw, text, *, tenant="acme", model="gpt-4o-mini", system=None, stream=False, headers=None, **kw):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model=model, messages=messages, temperature=kw.pop("temperature", 0), max_tokens=40, stream=stream,
        extra_headers={"x-scrimp-tenant": tenant, **(headers or {})}, **kw)


def test_paraphrases_hit_and_the_ledger_records_the_saving(sgw):
    for stored, (first_q, second_q) in enumerate(PARAPHRASES, start=1):
        first = ask(sgw, first_q)
        sgw.wait_stored(stored)
        calls = sgw.sim_calls()
        second = ask(sgw, second_q)
        assert sgw.sim_calls() == calls, f"{second_q!r} should have been served from the cache"
        assert second.headers["x-scrimp-cache"] == "semantic"
        assert int(second.headers["x-scrimp-cache-entry"]) > 0
        assert 0.5 < float(second.headers["x-scrimp-cache-similarity"]) <= 1.0
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        assert float(second.headers["x-scrimp-cost-usd"]) == 0
        assert float(second.headers["x-scrimp-saved-usd"]) == float(first.headers["x-scrimp-cost-usd"]) > 0
    hits = [r for r in sgw.rows() if r["cache"] == "semantic"]
    assert len(hits) == len(PARAPHRASES)
    assert all(r["saving_stage"] == "semantic_cache" and r["saved_usd"] > 0 for r in hits)


def test_near_misses_do_not_hit(sgw):
    for n, (cached, asked) in enumerate(NEAR_MISSES, start=1):
        ask(sgw, cached)
        sgw.wait_stored(n)
        reply = ask(sgw, asked)
        assert reply.headers["x-scrimp-cache"] == "miss", f"{asked!r} was answered with {cached!r}'s answer"


def test_tenants_system_prompts_and_models_never_share(sgw):
    q = "How can I reset my password?"
    ask(sgw, q, tenant="acme", system="You are a helpful assistant.")
    sgw.wait_stored(1)
    assert ask(sgw, q, tenant="globex", system="You are a helpful assistant.").headers["x-scrimp-cache"] == "miss"
    assert ask(sgw, q, tenant="acme", system="You answer in French.").headers["x-scrimp-cache"] == "miss"
    assert ask(sgw, q, tenant="acme", system="You are a helpful assistant.",
               model="gpt-4o").headers["x-scrimp-cache"] == "miss"
    # the same question again in the first context is a hit (the exact cache answers the identical text;
    # a paraphrase proves the semantic path)
    again = ask(sgw, "How do I reset my password?", tenant="acme", system="You are a helpful assistant.")
    assert again.headers["x-scrimp-cache"] == "semantic"


def test_earlier_turns_must_match(sgw):
    def convo(history_answer):
        c = openai.OpenAI(base_url=sgw.url + "/v1", api_key="k", max_retries=0)
        return c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", temperature=0, max_tokens=40, extra_headers={"x-scrimp-tenant": "acme"},
            messages=[{"role": "user", "content": "I use the mobile app."},
                      {"role": "assistant", "content": history_answer},
                      {"role": "user", "content": "How can I reset my password?"}])

    convo("Great, the app it is.")
    sgw.wait_stored(1)
    assert convo("Noted: the desktop site.").headers["x-scrimp-cache"] == "miss"


def test_streams_from_the_semantic_cache_in_both_formats(sgw):
    first = ask(sgw, "How can I reset my password?")
    sgw.wait_stored(1)
    text, finish = first.parse().choices[0].message.content, first.parse().choices[0].finish_reason
    raw = ask(sgw, "How do I reset my password?", stream=True)
    assert raw.headers["x-scrimp-cache"] == "semantic"
    chunks = list(raw.parse())
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == [finish]

    a = anthropic.Anthropic(base_url=sgw.url, api_key="k", max_retries=0)
    original = a.messages.create(model="gpt-4o-mini", max_tokens=40, extra_headers={"x-scrimp-tenant": "beta"},
                      messages=[{"role": "user", "content": "What is the best way to learn Python?"}])
    sgw.wait_stored(2)
    raw = a.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40, stream=True, extra_headers={"x-scrimp-tenant": "beta"},
        messages=[{"role": "user", "content": "What's the best way to learn Python?"}])
    assert raw.headers["x-scrimp-cache"] == "semantic"
    events = list(raw.parse())
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    with a.messages.stream(model="gpt-4o-mini", max_tokens=40,
                           extra_headers={"x-scrimp-tenant": "beta"},
                           messages=[{"role": "user", "content": "What's the best way to learn Python?"}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == original.content[0].text == final.content[0].text
    assert final.stop_reason == original.stop_reason


def test_not_eligible_with_temperature_or_pending_tool_results(sgw):
    ask(sgw, "How can I reset my password?", temperature=0.8)
    ask(sgw, "How can I reset my password?")
    sgw.wait_stored(1)
    assert ask(sgw, "How do I reset my password?", temperature=0.8).headers["x-scrimp-cache"] == "miss"
    c = openai.OpenAI(base_url=sgw.url + "/v1", api_key="k", max_retries=0)
    tool_turn = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", temperature=0, max_tokens=40, extra_headers={"x-scrimp-tenant": "acme"},
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        messages=[{"role": "user", "content": "How do I reset my password?"},
                  {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                        "function": {"name": "lookup", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "Use the reset link."}])
    assert tool_turn.headers["x-scrimp-cache"] == "miss"


def test_feedback_removes_the_entry_and_keeps_the_pair(sgw):
    ask(sgw, "How can I reset my password?")
    sgw.wait_stored(1)
    hit = ask(sgw, "How do I reset my password?")
    entry = int(hit.headers["x-scrimp-cache-entry"])
    other_tenant = httpx.post(sgw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": False},
                              headers={"x-scrimp-tenant": "globex"})
    assert other_tenant.status_code == 404  # one tenant cannot touch another's entries
    r = httpx.post(sgw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": False},
                   headers={"x-scrimp-tenant": "acme"})
    assert r.status_code == 200 and r.json() == {"entry_id": entry, "removed": True}
    assert sgw.entries() == 0
    assert ask(sgw, "How do I reset my password?").headers["x-scrimp-cache"] == "miss"
    assert sgw.stage.cache.store.feedback() == [
        {"tenant": "acme", "feature": "", "text_a": "How can I reset my password",
         "text_b": "How do I reset my password", "label": 0}]
    bad = httpx.post(sgw.url + "/v1/scrimp/cache/feedback", json={"entry": "x"}, headers={"x-scrimp-tenant": "acme"})
    assert bad.status_code == 400 and "entry_id" in bad.json()["error"]["message"]
    metrics = httpx.get(sgw.url + "/metrics").text
    assert 'scrimp_semantic_cache_lookups_total{result="hit"} 1\n' in metrics
    assert 'scrimp_semantic_cache_lookups_total{result="miss"} 2\n' in metrics
    assert "scrimp_semantic_cache_feedback_removed_total 1\n" in metrics


def test_ttl_and_eviction(make_gateway):
    gw = make_gateway("sqlite", ttl_s=0.3)
    ask(gw, "How can I reset my password?")
    gw.wait_stored(1)
    import time

    time.sleep(0.5)
    assert ask(gw, "How do I reset my password?").headers["x-scrimp-cache"] == "miss"  # expired

    gw = make_gateway("sqlite", max_entries=2)
    for q in ["How can I reset my password?", "What is the capital of France?", "How do I bake sourdough bread?"]:
        ask(gw, q)
        gw.wait_writes()  # the third write must land before the sweep, or the sweep has nothing to evict
    gw.stage.cache.sweep()
    assert gw.entries() == 2
    # the oldest entry went: its paraphrase misses; the newest is still served
    assert ask(gw, "How do I reset my password?").headers["x-scrimp-cache"] == "miss"
    assert ask(gw, "How can I bake sourdough bread?").headers["x-scrimp-cache"] == "semantic"


def test_replicas_share_entries_through_postgres(make_gateway):
    first = make_gateway("postgres")
    schema = first.stage.cache.store.schema
    second = make_gateway("postgres", schema=schema)  # a second replica on the same tables
    ask(first, "How can I reset my password?")
    first.wait_stored(1)
    assert ask(second, "How do I reset my password?").headers["x-scrimp-cache"] == "semantic"


def test_a_restarted_gateway_reads_its_saved_hnsw_index(make_gateway, tmp_path):
    questions = ["How can I reset my password?", "What is the capital of France?", "How do I bake sourdough bread?",
                 "Where can I download my invoice?"]
    gw = make_gateway("sqlite", schema="restart", hnsw_from=3)  # HNSW from the third entry on
    for n, q in enumerate(questions, start=1):
        ask(gw, q)
        gw.wait_stored(n)
    assert ask(gw, "How do I reset my password?").headers["x-scrimp-cache"] == "semantic"
    gw.stop()  # a graceful stop saves the graph beside the SQLite file
    saved = list((tmp_path / "semantic.db.indexes").glob("*.usearch"))
    assert len(saved) == 1

    again = make_gateway("sqlite", schema="restart", hnsw_from=3)
    deadline = time.monotonic() + 20
    while not again.stage.cache._indexes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(again.stage.cache._indexes) == 1  # read back at start-up, before any request asked for it
    reply = ask(again, "Where do I download my invoice?")
    assert reply.headers["x-scrimp-cache"] == "semantic"
    (index,) = again.stage.cache._indexes.values()
    assert index.kind == "hnsw" and len(index) == 4 and not index.dirty  # read back, not rebuilt
