"""The simulator's Anthropic surface, driven by the official anthropic SDK."""

from __future__ import annotations

import anthropic
import httpx
import pytest

SONNET = "claude-sonnet-4-6"  # minimum cacheable length 1024 tokens
HAIKU = "claude-haiku-4-5"  # minimum cacheable length 4096 tokens
LONG = " ".join(f"rule{i % 40} applies" for i in range(1000))  # ~2000 tokens


def client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


def cached_system(ttl="5m"):
    return [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": ttl}}]


def test_message_and_stream_agree(sim_url):
    c = client(sim_url)
    plain = c.messages.create(model=SONNET, max_tokens=40, messages=user("describe the plan"))
    assert plain.content[0].type == "text" and plain.usage.output_tokens <= 40
    with c.messages.stream(model=SONNET, max_tokens=40, messages=user("describe the plan")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == plain.stop_reason


def test_raw_event_sequence(sim_url):
    body = {"model": SONNET, "max_tokens": 10, "messages": user("hi"), "stream": True}
    raw = httpx.post(sim_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}).text
    events = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in events


async def test_async_client(sim_url):
    c = anthropic.AsyncAnthropic(base_url=sim_url, api_key="k", max_retries=0)
    msg = await c.messages.create(model=HAIKU, max_tokens=20, system="You are terse.", messages=user("hello"))
    assert msg.content[0].text


def test_second_long_prefix_request_reads_what_the_first_wrote(sim_url):
    c = client(sim_url)
    first = c.messages.create(model=SONNET, max_tokens=5, system=cached_system(), messages=user("one"))
    second = c.messages.create(model=SONNET, max_tokens=5, system=cached_system(), messages=user("two"))
    assert first.usage.cache_creation_input_tokens > 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens  # the user turn, on top of the cache


def test_one_hour_ttl_is_reported_apart_and_expiry_rewrites(sim_url, clock):
    c = client(sim_url)
    first = c.messages.create(model=SONNET, max_tokens=5, system=cached_system("1h"), messages=user("q"))
    assert first.usage.cache_creation.ephemeral_1h_input_tokens > 0
    clock.now += 1800  # still inside the hour
    assert c.messages.create(model=SONNET, max_tokens=5, system=cached_system("1h"),
                             messages=user("q")).usage.cache_read_input_tokens > 0
    five = c.messages.create(model=SONNET, max_tokens=5, system=cached_system("5m"), messages=user("z"))
    assert five.usage.cache_read_input_tokens > 0  # same prefix, whichever TTL wrote it
    clock.now += 3601
    again = c.messages.create(model=SONNET, max_tokens=5, system=cached_system("1h"), messages=user("q"))
    assert again.usage.cache_read_input_tokens == 0 and again.usage.cache_creation_input_tokens > 0


def test_short_prefix_is_never_cached(sim_url):
    c = client(sim_url)
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        usage = c.messages.create(model=SONNET, max_tokens=5, system=system, messages=user("q")).usage
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    # ~2000 tokens reach Sonnet's minimum but not Haiku's (4096).
    usage = c.messages.create(model=HAIKU, max_tokens=5, system=cached_system(), messages=user("q")).usage
    assert usage.cache_creation_input_tokens == 0


def test_conversation_breakpoint_hits_within_lookback(sim_url):
    c = client(sim_url)
    turns = [{"role": "user", "content": [{"type": "text", "text": LONG}]},
             {"role": "assistant", "content": "ok"},
             {"role": "user", "content": [{"type": "text", "text": "next", "cache_control": {"type": "ephemeral"}}]}]
    c.messages.create(model=SONNET, max_tokens=5, messages=turns)
    grown = turns + [{"role": "assistant", "content": "sure"},
                     {"role": "user", "content": [{"type": "text", "text": "more",
                                                   "cache_control": {"type": "ephemeral"}}]}]
    grown[2] = {"role": "user", "content": [{"type": "text", "text": "next"}]}
    usage = c.messages.create(model=SONNET, max_tokens=5, messages=grown).usage
    assert usage.cache_read_input_tokens > 1024  # found the earlier entry a few blocks back
    assert usage.cache_creation_input_tokens > 0  # and wrote the new tail


def test_more_than_four_breakpoints_is_rejected(sim_url):
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        client(sim_url).messages.create(model=SONNET, max_tokens=5, system=blocks, messages=user("q"))


def test_tools_stop_sequences_and_count_tokens(sim_url):
    c = client(sim_url)
    tools = [{"name": "lookup", "description": "Find an order", "input_schema": {
        "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}]
    msg = c.messages.create(model=SONNET, max_tokens=50, tools=tools, tool_choice={"type": "tool", "name": "lookup"},
                            messages=user("where is my order?"))
    assert msg.stop_reason == "tool_use" and msg.content[0].name == "lookup" and "order_id" in msg.content[0].input
    with c.messages.stream(model=SONNET, max_tokens=50, tools=tools, tool_choice={"type": "tool", "name": "lookup"},
                           messages=user("where is my order?")) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].input == msg.content[0].input
    full = c.messages.create(model=SONNET, max_tokens=200, messages=user("long answer")).content[0].text
    word = full.split()[4]
    cut = c.messages.create(model=SONNET, max_tokens=200, messages=user("long answer"), stop_sequences=[word])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == word and word not in cut.content[0].text
    counted = c.messages.count_tokens(model=SONNET, tools=tools, messages=user("where is my order?"))
    used = c.messages.create(model=SONNET, max_tokens=5, tools=tools, messages=user("where is my order?"))
    assert counted.input_tokens == used.usage.input_tokens


@pytest.mark.parametrize("body,status,kind", [
    ({"model": SONNET, "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error"),
    ({"model": SONNET, "max_tokens": 5}, 400, "invalid_request_error"),
    ({"model": SONNET, "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}, 400,
     "invalid_request_error"),
    ({"model": "claude-nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404,
     "not_found_error"),
])
def test_errors_have_anthropic_shape(sim_url, body, status, kind):
    r = httpx.post(sim_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == status
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == kind
    if body.get("model") == SONNET and "max_tokens" not in body:
        assert "max_tokens" in r.json()["error"]["message"]
