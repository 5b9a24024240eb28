"""The simulator's OpenAI surface, driven by the official openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

LONG = " ".join(f"policy{i % 50} clause" for i in range(800))  # ~1600 tokens: above the 1024 minimum


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0)


def ask(c, content, **kw):
    return c.chat.completions.create(model=kw.pop("model", "gpt-4o-mini"),
                                     messages=[{"role": "user", "content": content}], **kw)


def test_reply_is_deterministic_and_bounded_by_max_tokens(sim_url):
    c = client(sim_url)
    a = ask(c, "Explain caching", max_tokens=12)
    b = ask(c, "Explain caching", max_tokens=12)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens <= 12
    assert a.choices[0].finish_reason == "length"
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert ask(c, "Something else", max_tokens=12).choices[0].message.content != a.choices[0].message.content


def test_long_prefix_is_cached_on_the_second_call_in_128_token_steps(sim_url):
    c = client(sim_url)
    msgs = lambda q: [{"role": "system", "content": LONG}, {"role": "user", "content": q}]
    first = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("first"), max_tokens=5)
    second = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("second"), max_tokens=5)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and (cached - 1024) % 128 == 0
    assert cached <= second.usage.prompt_tokens
    # Another model does not share the cache.
    other = c.chat.completions.create(model="gpt-4o", messages=msgs("third"), max_tokens=5)
    assert other.usage.prompt_tokens_details.cached_tokens == 0


def test_short_prefix_is_never_cached(sim_url):
    c = client(sim_url)
    for _ in range(3):
        r = ask(c, "short question " * 20, max_tokens=5)
        assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_prompt_cache_key_partitions_and_idle_entries_expire(sim_url, clock):
    c = client(sim_url)
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]
    c.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, prompt_cache_key="a")
    hit = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, prompt_cache_key="a")
    other = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, prompt_cache_key="b")
    assert hit.usage.prompt_tokens_details.cached_tokens > 0
    assert other.usage.prompt_tokens_details.cached_tokens == 0
    clock.now += 3600  # idle past the expiry: written again, then read
    again = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, prompt_cache_key="a")
    assert again.usage.prompt_tokens_details.cached_tokens == 0
    last = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, prompt_cache_key="a")
    assert last.usage.prompt_tokens_details.cached_tokens > 0


def test_stream_with_usage_matches_non_stream(sim_url):
    c = client(sim_url)
    plain = ask(c, "stream me", max_tokens=40)
    chunks = list(ask(c, "stream me", max_tokens=40, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    no_usage = list(ask(c, "stream me", max_tokens=40, stream=True))
    assert all(ch.usage is None for ch in no_usage)
    assert no_usage[-1].choices[0].finish_reason == plain.choices[0].finish_reason


async def test_async_client_streaming(sim_url):
    c = openai.AsyncOpenAI(base_url=sim_url + "/v1", api_key="k", max_retries=0)
    stream = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=20, stream=True)
    parts = [ch.choices[0].delta.content or "" async for ch in stream]
    assert "".join(parts)


def test_json_schema_reply_fits_the_schema(sim_url):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"},
                                               "ok": {"type": "boolean"}, "tags": {"type": "array",
                                                                                   "items": {"type": "string"}}},
              "required": ["city", "temp", "ok", "tags"], "additionalProperties": False}
    r = ask(client(sim_url), "weather?", response_format={"type": "json_schema",
                                                           "json_schema": {"name": "w", "schema": schema}})
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"city", "temp", "ok", "tags"}
    assert isinstance(data["city"], str) and isinstance(data["ok"], bool) and isinstance(data["tags"], list)
    assert isinstance(json.loads(ask(client(sim_url), "x", response_format={"type": "json_object"})
                                 .choices[0].message.content), dict)


def test_forced_tool_call(sim_url):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    r = ask(client(sim_url), "weather in Paris", tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)


def test_n_choices_and_stop(sim_url):
    c = client(sim_url)
    r = ask(c, "give options", n=3, max_tokens=20)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    full = ask(c, "stop test", max_tokens=200).choices[0].message.content
    word = full.split()[3]
    cut = ask(c, "stop test", max_tokens=200, stop=[word])
    assert word not in cut.choices[0].message.content and cut.choices[0].finish_reason == "stop"
    assert full.startswith(cut.choices[0].message.content)


@pytest.mark.parametrize(
    "body,status,param",
    [
        ({"model": "gpt-4o"}, 400, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, 400, "max_tokens"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 5}, 400, "temperature"),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ],
)
def test_errors_have_openai_shape_and_status(sim_url, body, status, param):
    r = httpx.post(sim_url + "/v1/chat/completions", json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"


def test_malformed_json_and_oversized_context(sim_url):
    r = httpx.post(sim_url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client(sim_url), "word " * 130_000)
    assert exc.value.code == "context_length_exceeded"


def test_embeddings_are_deterministic(sim_url):
    c = client(sim_url)
    a = c.embeddings.create(model="text-embedding-3-small", input=["refund policy", "refund policy", "tax"])
    assert len(a.data) == 3 and len(a.data[0].embedding) == 1536
    assert a.data[0].embedding == a.data[1].embedding != a.data[2].embedding
    assert a.usage.prompt_tokens > 0


def test_models_list_and_counters(sim_url):
    c = client(sim_url)
    names = {m.id for m in c.models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5"} <= names
    ask(c, "count me", max_tokens=5)
    counters = httpx.get(sim_url + "/sim/counters").json()
    assert counters["models"]["gpt-4o-mini"]["requests"] == 1
    assert counters["totals"]["output_tokens"] <= 5
