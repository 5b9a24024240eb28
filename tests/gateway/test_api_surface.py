"""Both wire APIs through the gateway: async clients, cross-format translation (tools too), bad input."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

TOOLS_OA = [{"type": "function", "function": {"name": "get_order", "description": "Look up an order",
                                              "parameters": {"type": "object", "properties": {
                                                  "order_id": {"type": "string"}}, "required": ["order_id"]}}}]
TOOLS_AN = [{"name": "get_order", "description": "Look up an order", "input_schema": {
    "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}]


async def test_async_clients_both_formats(gw):
    oa = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    r = await oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    assert r.choices[0].message.content
    an = anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0)
    async with an.messages.stream(model="claude-haiku-4-5", max_tokens=10,
                                  messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join([t async for t in s.text_stream])
    assert text
    await oa.close()
    await an.close()
    assert len(gw.rows()) == 2


def test_openai_client_served_by_anthropic_model_with_tools(gw):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    r = c.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "order 42?"}],
                                  tools=TOOLS_OA, tool_choice={"type": "function", "function": {"name": "get_order"}})
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_order"
    args = json.loads(call.function.arguments)
    # The tool result goes back in OpenAI's shape and is translated for Anthropic.
    follow = c.chat.completions.create(model="claude-sonnet-4-6", max_tokens=20, tools=TOOLS_OA, messages=[
        {"role": "user", "content": "order 42?"}, r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"status": "shipped", **args})}])
    assert follow.choices[0].message.content and follow.usage.prompt_tokens > r.usage.prompt_tokens
    streamed = list(c.chat.completions.create(model="claude-sonnet-4-6", stream=True, tools=TOOLS_OA,
                                              messages=[{"role": "user", "content": "order 42?"}],
                                              tool_choice={"type": "function",
                                                           "function": {"name": "get_order"}}))
    deltas = [d for ch in streamed if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_order"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == args


def test_anthropic_client_served_by_openai_model_with_tools_and_stream(gw):
    c = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    msg = c.messages.create(model="gpt-4o-mini", max_tokens=50, tools=TOOLS_AN,
                            tool_choice={"type": "tool", "name": "get_order"},
                            messages=[{"role": "user", "content": "order 42?"}])
    assert msg.stop_reason == "tool_use" and msg.content[0].name == "get_order"
    with c.messages.stream(model="gpt-4o-mini", max_tokens=30, system="Be brief.",
                           messages=[{"role": "user", "content": "explain"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    plain = c.messages.create(model="gpt-4o-mini", max_tokens=30, system="Be brief.",
                              messages=[{"role": "user", "content": "explain"}])
    assert text == plain.content[0].text and final.usage.output_tokens == plain.usage.output_tokens
    rows = gw.rows()
    assert {r["provider"] for r in rows} == {"openai"} and {r["inbound"] for r in rows} == {"anthropic"}


def test_json_schema_through_anthropic_model(gw):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
              "required": ["answer", "score"]}
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    r = c.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "rate it"}],
                                  response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"answer", "score"} and r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("path,body,status,fmt,needle", [
    ("/v1/chat/completions", b"{oops", 400, "openai", "JSON"),
    ("/v1/chat/completions", b'{"model": "gpt-4o"}', 400, "openai", "messages"),
    ("/v1/chat/completions", b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}',
     400, "openai", "max_tokens"),
    ("/v1/chat/completions", b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "openai",
     "gpt-9"),
    ("/v1/messages", b'{"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}', 400,
     "anthropic", "max_tokens"),
    ("/v1/messages", b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": "hi"}', 400, "anthropic",
     "messages"),
    ("/v1/messages", b'{"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', 404,
     "anthropic", "nope"),
])
def test_bad_input_gets_the_apis_own_error_and_writes_nothing(gw, path, body, status, fmt, needle):
    calls = gw.sim_calls()
    r = httpx.post(gw.url + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    data = r.json()
    if fmt == "openai":
        assert needle in data["error"]["message"] or needle == data["error"]["param"]
    else:
        assert data["type"] == "error" and needle in data["error"]["message"]
    assert gw.sim_calls() == calls  # nothing reached the provider
    assert gw.rows() == []  # and nothing was recorded or cached


def test_oversized_body_is_refused_with_413(gw):
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=big, timeout=30)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]


def test_models_and_count_tokens(gw):
    names = {m.id for m in openai.OpenAI(base_url=gw.url + "/v1", api_key="k").models.list()}
    assert {"gpt-4o", "claude-haiku-4-5"} <= names
    c = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    counted = c.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "count me"}])
    used = c.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens == used.usage.input_tokens
    emb = openai.OpenAI(base_url=gw.url + "/v1", api_key="k").embeddings.create(
        model="text-embedding-3-small", input="hello")
    assert len(emb.data[0].embedding) == 1536
