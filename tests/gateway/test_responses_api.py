"""The OpenAI Responses API through scrimp, with the official SDK, to an OpenAI model (sent natively to its
Responses API; more in test_responses_native.py) and to an Anthropic model (translated to Messages): text,
streaming, function calls, JSON schema output,
previous_response_id chains, stored responses per tenant, exact-cache hits, ledger rows priced by hand, and
errors in OpenAI's shape. The store itself is tested over SQLite, PostgreSQL and memory."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import parse
from scrimp.responses_store import PostgresResponses, ResponsesStore, SQLiteResponses, StoredResponse
from scrimp.sim.config import ModelConfig, SimConfig
from scrimp.sim.testing import run_simulator, serve_app

MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]
CLAUDE = "claude-haiku-4-5"
# USD per million tokens (input, output) as the providers publish them, written here by hand.
PER_MTOK = {"gpt-4o-mini": (0.15, 0.60), "claude-haiku-4-5": (1.00, 5.00)}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def client(gw, key: str = "key-a", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, default_headers=headers or None)


def by_hand(model: str, input_tokens: int, output_tokens: int) -> float:
    usd_in, usd_out = PER_MTOK[model]
    return (input_tokens * usd_in + output_tokens * usd_out) / 1e6


@pytest.fixture
def sent(gw, monkeypatch) -> list[dict[str, Any]]:
    """The bodies the gateway sends upstream (Responses for OpenAI models, Messages for Anthropic ones), in order."""
    bodies: list[dict[str, Any]] = []
    upstream = gw.gateway.upstream
    original = upstream.body

    def body(spec, request):
        path, payload = original(spec, request)
        bodies.append(payload)
        return path, payload

    monkeypatch.setattr(upstream, "body", body)
    return bodies


def texts_sent(body: dict[str, Any]) -> str:
    """Everything a model was sent, as one string (system / instructions and every turn / input item)."""
    return json.dumps({k: body.get(k) for k in ("system", "messages", "instructions", "input")})


def endpoints(gw) -> dict[str, int]:
    """The simulator's requests per endpoint."""
    return gw.sim.counters.snapshot()["endpoints"]


# -- text ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_text_response_object_and_usage(gw, sent, model):
    raw = client(gw).responses.with_raw_response.create(model=model, input="hello there", instructions="Be brief.")
    r = raw.parse()
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == model and r.instructions == "Be brief." and r.error is None and r.incomplete_details is None
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text" and r.output_text == message.content[0].text != ""
    u = r.usage
    assert u.input_tokens > 0 and u.output_tokens > 0 and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens == 0 and u.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-scrimp-model"] == model and raw.headers["x-scrimp-cache"] == "miss"
    (body,) = sent
    if model.startswith("claude"):
        assert body["system"] == [{"type": "text", "text": "Be brief."}]
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    else:  # the client's own body, natively
        assert body == {"model": model, "input": [{"role": "user", "content": "hello there"}],
                        "instructions": "Be brief.", "store": False}
        assert endpoints(gw) == {"responses": 1}


def test_input_items_with_developer_message_and_parameters_reach_the_model(gw, sent):
    r = client(gw).responses.create(
        model="gpt-4o-mini", temperature=0.3, top_p=0.9, max_output_tokens=300, metadata={"feature": "faq"},
        input=[{"role": "developer", "content": "Answer in French."},
               {"role": "user", "content": [{"type": "input_text", "text": "What is a cache?"}]}])
    (body,) = sent
    assert body["input"] == [{"role": "developer", "content": "Answer in French."},
                             {"role": "user", "content": [{"type": "input_text", "text": "What is a cache?"}]}]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["max_output_tokens"] == 300
    assert r.temperature == 0.3 and r.max_output_tokens == 300 and r.metadata == {"feature": "faq"}
    (row,) = gw.rows()
    assert row["feature"] == "faq" and row["inbound"] == "responses"


def test_reasoning_effort_reaches_an_openai_model_that_refuses_it(gw, sent):
    with pytest.raises(openai.BadRequestError) as exc:  # gpt-4o-mini does not reason: refused as OpenAI does
        client(gw).responses.create(model="gpt-4o-mini", input="think", reasoning={"effort": "low"})
    assert exc.value.param == "reasoning.effort" and sent[0]["reasoning"] == {"effort": "low"}


@pytest.fixture(scope="module")
def reasoning_gw(tmp_path_factory):
    """A gateway in front of a simulated reasoning model (o4-mini: reasoning tokens billed as output)."""
    sim_cfg = SimConfig(models={"o4-mini": ModelConfig("o4-mini", "openai", reasoning=True,
                                                       rejects=["max_tokens", "temperature", "top_p"])})
    with run_simulator(sim_cfg) as (sim_url, _):
        cfg = parse({"models": [{"name": "o4-mini", "provider": "openai", "base_url": sim_url + "/v1",
                                 "api_key": "k", "max_tokens_field": "max_completion_tokens"}],
                     "stages": [{"name": "ledger", "path": str(tmp_path_factory.mktemp("reasoning") / "l.db")}]})
        app = create_app(cfg)
        with serve_app(app) as url:
            yield url, app


def test_reasoning_tokens_are_reported_and_billed_as_output(reasoning_gw):
    url, app = reasoning_gw
    c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    r = c.responses.create(model="o4-mini", input="Prove it.", reasoning={"effort": "medium"},
                           max_output_tokens=4000)
    reasoning = r.usage.output_tokens_details.reasoning_tokens
    assert reasoning > 0 and r.usage.output_tokens > reasoning and r.reasoning.effort == "medium"
    store = app.state.gateway.ledger
    store.flush()
    (row,) = store.query("SELECT input_tokens, output_tokens, reasoning_tokens, cost_usd FROM calls")
    # o4-mini: $1.10 / M input, $4.40 / M output (reasoning tokens are output), written by hand
    assert row[:3] == (r.usage.input_tokens, r.usage.output_tokens, reasoning)
    assert row[3] == pytest.approx((r.usage.input_tokens * 1.10 + r.usage.output_tokens * 4.40) / 1e6)


@pytest.mark.parametrize("model", MODELS)
def test_max_output_tokens_makes_an_incomplete_response(gw, model):
    c = client(gw)
    r = c.responses.create(model=model, input="tell me a long story", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16 and r.output[0].status == "incomplete"
    events = list(c.responses.create(model=model, input="tell me a long story", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


# -- streaming -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_stream_events_in_openai_order(gw, model):
    c = client(gw)
    events = list(c.responses.create(model=model, input="describe a cache", stream=True))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, done = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.id == done.id
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    item_id = events[2].item.id
    assert all(getattr(e, "item_id", item_id) == item_id for e in events[3:-1])
    assert events[-4].text == text == done.output_text and done.output[0].id == item_id
    assert done.status == "completed" and done.usage.output_tokens > 0
    assert c.responses.retrieve(done.id).output_text == text  # stored when the stream completed

    with c.responses.stream(model=model, input="describe a cache again") as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == streamed != ""


@pytest.mark.parametrize("model", MODELS)
def test_stream_is_recorded_in_the_ledger(gw, model):
    events = list(client(gw).responses.create(model=model, input="a streamed question", stream=True))
    usage = events[-1].response.usage
    (row,) = gw.rows()
    assert row["stream"] == 1 and row["inbound"] == "responses" and row["status"] == "ok"
    assert row["input_tokens"] == usage.input_tokens and row["output_tokens"] == usage.output_tokens
    assert row["cost_usd"] == pytest.approx(by_hand(model, usage.input_tokens, usage.output_tokens))


def test_a_stream_broken_after_its_first_byte_ends_with_error_and_failed(gw):
    gw.sim.faults.script("gpt-4o-mini", "drop")
    c = client(gw)
    events = list(c.responses.create(model="gpt-4o-mini", input="hello there", stream=True))
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds and kinds[-2:] == ["error", "response.failed"]
    assert "stream broke" in events[-2].message and events[-1].response.status == "failed"
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored
        c.responses.retrieve(events[0].response.id)


# -- function calls --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(gw, sent, model):
    c = client(gw)
    first = c.responses.create(model=model, input="What is the weather in Paris?", tools=[WEATHER],
                               tool_choice={"type": "function", "name": "get_weather"})
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id and call.id.startswith("fc_") and "city" in json.loads(call.arguments)
    assert first.tools[0].name == "get_weather" and first.tool_choice.name == "get_weather"
    second = c.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER],
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "Sunny, 24 C"}])
    assert second.status == "completed" and second.output_text and second.previous_response_id == first.id
    body = sent[1]
    if model.startswith("claude"):
        user, assistant, result = body["messages"]
        assert user["content"] == [{"type": "text", "text": "What is the weather in Paris?"}]
        assert assistant["content"] == [{"type": "tool_use", "id": call.call_id, "name": "get_weather",
                                         "input": json.loads(call.arguments)}]
        assert result["content"] == [{"type": "tool_result", "tool_use_id": call.call_id, "content": "Sunny, 24 C"}]
    else:  # scrimp resolves previous_response_id: the whole conversation goes, and nothing is stored upstream
        user, fn_call, result = body["input"]
        assert user == {"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}
        assert fn_call == call.model_dump(exclude_none=True)
        assert result == {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}
        assert body["store"] is False and "previous_response_id" not in body
    items = c.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1].id == call.id and items[2].call_id == call.call_id


@pytest.mark.parametrize("model", MODELS)
def test_streamed_function_call(gw, model):
    events = list(client(gw).responses.create(model=model, input="Weather in Oslo?", tools=[WEATHER],
                                              tool_choice="required", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[2].item.type == "function_call" and events[2].item.arguments == ""
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert events[-3].arguments == args and "city" in json.loads(args)
    final = events[-1].response.output[0]
    assert final.type == "function_call" and final.arguments == args and final.call_id == events[2].item.call_id


def test_tool_call_given_back_in_input_without_previous_response(gw, sent):
    """The stateless way: the caller sends the earlier output items back itself (`input += response.output`)."""
    c = client(gw)
    first = c.responses.create(model="claude-haiku-4-5", input="Weather in Rome?", tools=[WEATHER],
                               tool_choice="required", store=False)
    history = [{"role": "user", "content": "Weather in Rome?"}, *[o.model_dump() for o in first.output],
               {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "Rain"}]
    second = c.responses.create(model="claude-haiku-4-5", input=history, tools=[WEATHER])
    assert second.output_text and [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]


# -- JSON ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_json_schema_output_parses(gw, model):
    c = client(gw)
    text = {"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}}
    r = c.responses.create(model=model, input="Invent a person.", text=text)
    value = json.loads(r.output_text)
    assert isinstance(value, dict) and {"name", "age"} <= set(value)
    assert r.text.format.type == "json_schema" and r.text.format.name == "person"
    events = list(c.responses.create(model=model, input="Invent another person.", text=text, stream=True))
    assert isinstance(json.loads(events[-1].response.output_text), dict)


def test_json_object_output_parses(gw):
    r = client(gw).responses.create(model="claude-haiku-4-5", input="Reply in JSON.",
                                    text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(r.output_text), dict)


# -- previous_response_id, store, retrieve, delete, input items ------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_previous_response_chain_remembers_earlier_turns(gw, sent, model):
    c = client(gw)
    one = c.responses.create(model=model, input="My name is Ada.", instructions="Be kind.")
    two = c.responses.create(model=model, input="I live in Lyon.", previous_response_id=one.id)
    three = c.responses.create(model=model, input="Where do I live?", previous_response_id=two.id)
    assert three.output_text
    last = texts_sent(sent[2])
    for earlier in ("My name is Ada.", one.output_text, "I live in Lyon.", two.output_text, "Where do I live?"):
        assert json.dumps(earlier)[1:-1] in last
    assert "Be kind." not in texts_sent(sent[1])  # instructions are not carried over (as OpenAI does)
    assert three.usage.input_tokens > two.usage.input_tokens > one.usage.input_tokens
    items = c.responses.input_items.list(three.id)  # newest first by default
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"), ("message", "assistant"), ("message", "user"), ("message", "assistant"),
        ("message", "user")]
    assert items.data[1].content[0].text == two.output_text and items.data[1].id == two.output[0].id
    page = c.responses.input_items.list(three.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["My name is Ada.", one.output_text] and page.has_more
    rest = c.responses.input_items.list(three.id, order="asc", limit=10, after=page.last_id)
    assert len(rest.data) == 3 and not rest.has_more
    assert c.responses.retrieve(two.id).model_dump() == two.model_dump()


def test_store_false_stores_nothing(gw):
    c = client(gw)
    r = c.responses.create(model="gpt-4o-mini", input="forget me", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as exc:
        c.responses.create(model="gpt-4o-mini", input="and now?", previous_response_id=r.id)
    assert exc.value.code == "previous_response_not_found" and exc.value.param == "previous_response_id"
    assert r.id in exc.value.message


def test_delete(gw):
    c = client(gw)
    r = c.responses.create(model="gpt-4o-mini", input="short-lived")
    c.responses.delete(r.id)
    for call in (lambda: c.responses.retrieve(r.id), lambda: c.responses.delete(r.id),
                 lambda: c.responses.input_items.list(r.id)):
        with pytest.raises(openai.NotFoundError) as exc:
            call()
        assert exc.value.body["message"] == f"Response with id '{r.id}' not found."


def test_a_tenant_cannot_read_or_continue_another_tenants_response(gw):
    mine = client(gw, "key-a")
    r = mine.responses.create(model="gpt-4o-mini", input="a secret")
    for other in (client(gw, "key-b"), client(gw, "key-a", **{"x-scrimp-tenant": "globex"})):
        for call in (lambda o=other: o.responses.retrieve(r.id), lambda o=other: o.responses.delete(r.id),
                     lambda o=other: o.responses.input_items.list(r.id),
                     lambda o=other: o.responses.create(model="gpt-4o-mini", input="go on",
                                                        previous_response_id=r.id)):
            with pytest.raises(openai.NotFoundError) as exc:
                call()
            assert exc.value.body["type"] == "invalid_request_error" and r.id in exc.value.message
    assert mine.responses.retrieve(r.id).output_text == r.output_text  # still there for its own tenant
    named = client(gw, "key-c", **{"x-scrimp-tenant": "acme"})
    r2 = named.responses.create(model="gpt-4o-mini", input="for acme")
    assert client(gw, "key-d", **{"x-scrimp-tenant": "acme"}).responses.retrieve(r2.id).id == r2.id


# -- levers: the exact cache and the ledger --------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_exact_cache_hit_is_a_response_with_a_fresh_id(gw, model):
    c = client(gw)
    kw: dict[str, Any] = {"model": model, "input": "What is an exact cache?", "temperature": 0}
    first = c.responses.with_raw_response.create(**kw)
    second = c.responses.with_raw_response.create(**kw)
    a, b = first.parse(), second.parse()
    assert first.headers["x-scrimp-cache"] == "miss" and second.headers["x-scrimp-cache"] == "exact"
    assert b.id != a.id and b.output_text == a.output_text and b.status == "completed"
    assert b.output[0].id != a.output[0].id and gw.sim_calls() == 1
    assert c.responses.retrieve(b.id).output_text == a.output_text  # a hit is stored like any answer
    events = list(c.responses.create(stream=True, **kw))  # a streamed hit
    assert events[-1].type == "response.completed" and events[-1].response.output_text == a.output_text
    assert gw.sim_calls() == 1
    miss, hit, streamed = gw.rows()
    cost = by_hand(model, a.usage.input_tokens, a.usage.output_tokens)
    assert miss["cost_usd"] == pytest.approx(cost) and miss["cache"] == "miss"
    for row in (hit, streamed):
        assert row["cache"] == "exact" and row["cost_usd"] == 0 and row["saved_usd"] == pytest.approx(cost)
        assert row["inbound"] == "responses"


@pytest.mark.parametrize("model", MODELS)
def test_ledger_rows_priced_by_hand(gw, model):
    c = client(gw, **{"x-scrimp-tenant": "acme", "x-scrimp-feature": "agent", "x-scrimp-user": "u1"})
    raw = c.responses.with_raw_response.create(model=model, input="price this answer", max_output_tokens=60)
    r = raw.parse()
    (row,) = gw.rows()
    expected = by_hand(model, r.usage.input_tokens, r.usage.output_tokens)
    assert row["inbound"] == "responses" and row["requested_model"] == row["served_model"] == model
    assert (row["tenant"], row["feature"], row["user_id"]) == ("acme", "agent", "u1")
    assert row["input_tokens"] == r.usage.input_tokens and row["output_tokens"] == r.usage.output_tokens
    assert row["cost_usd"] == pytest.approx(expected) and row["status"] == "ok" and row["stream"] == 0
    assert float(raw.headers["x-scrimp-cost-usd"]) == pytest.approx(expected, abs=1e-8)


# -- errors ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "status", "param", "words"), [
    ({"input": 42}, 400, "input", "Invalid type for 'input'"),
    ({"input": [{"role": "robot", "content": "hi"}]}, 400, "input[0].role", "Invalid value"),
    ({}, 400, "input", "Missing required parameter: 'input'"),
    ({"input": "hi", "max_output_tokens": 5}, 400, "max_output_tokens", "Expected a value >= 16"),
    ({"input": "hi", "model": "gpt-9"}, 404, "model", "gpt-9"),
    # hosted tools and their items: passed to an OpenAI model (test_responses_native.py), refused for an Anthropic one
    ({"input": "hi", "tools": [{"type": "web_search"}], "model": CLAUDE}, 400, "tools[0].type", "'web_search'"),
    ({"input": "hi", "tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}], "model": CLAUDE},
     400, "tools[1].type", "'file_search'"),
    ({"input": "hi", "tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1,
                                "environment": "linux"}], "model": CLAUDE}, 400, "tools[0].type",
     "'computer_use_preview'"),
    ({"input": "hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}], "model": CLAUDE}, 400,
     "tools[0].type", "'code_interpreter'"),
    ({"input": "hi", "tool_choice": {"type": "web_search_preview"}, "model": CLAUDE}, 400, "tool_choice",
     "web_search_preview"),
    ({"input": [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws_1", "status": "completed",
                                                   "action": {"type": "search", "query": "q"}}], "model": CLAUDE},
     400, "input[1].type", "'web_search_call'"),
    ({"input": "hi", "background": True}, 400, "background", "'background'"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type", "'item_reference'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}, 400,
     "input[0].content[0].type", "'input_file'"),
    ({"input": "hi", "tool_choice": "sometimes"}, 400, "tool_choice", "sometimes"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, 400, "text.format.type", "'xml'"),
    ({"input": "hi", "extra_body": {"frobnicate": 1}}, 400, "frobnicate", "Unknown parameter: 'frobnicate'"),
])
def test_errors_in_openai_shape(gw, kwargs, status, param, words):
    body = {"model": "gpt-4o-mini", **kwargs}
    extra = body.pop("extra_body", None)
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw).responses.create(**body, extra_body=extra)
    err = exc.value
    assert err.status_code == status and err.param == param and words in err.message
    assert err.body["type"] == "invalid_request_error" and err.response.headers["x-scrimp-request-id"]
    if status == 404:
        assert err.code == "model_not_found"
    assert gw.sim_calls() == 0


# -- the store over each backend -------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres", "memory"])
def make_store(request, tmp_path):
    schema = f"scrimp_test_responses_{uuid.uuid4().hex[:10]}"

    def make() -> ResponsesStore:
        if request.param == "sqlite":
            return SQLiteResponses(str(tmp_path / "ledger.db"))
        if request.param == "postgres":
            return PostgresResponses(PG_DSN, schema)
        return shared

    shared = ResponsesStore()
    yield make
    if request.param == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_store_keeps_responses_per_tenant_across_reopening(make_store):
    rec = StoredResponse("resp_1", "acme", 1.5, {"id": "resp_1", "output": [{"type": "message", "id": "m2"}]},
                         [{"type": "message", "id": "m1"}])

    async def scenario() -> None:
        store = make_store()
        await store.start()
        await store.save(rec)
        await store.close()
        again = make_store()  # a new connection (a restarted gateway) finds it
        await again.start()
        got = await again.get("acme", "resp_1")
        assert got == rec and got.history() == [{"type": "message", "id": "m1"}, {"type": "message", "id": "m2"}]
        assert await again.get("globex", "resp_1") is None and await again.get("acme", "resp_2") is None
        assert not await again.delete("globex", "resp_1")
        assert await again.delete("acme", "resp_1") and await again.get("acme", "resp_1") is None
        await again.close()

    asyncio.run(scenario())


def test_memory_store_is_bounded():
    store = ResponsesStore(max_entries=2)

    async def scenario() -> None:
        for n in range(3):
            await store.save(StoredResponse(f"resp_{n}", "t", 0.0, {}, []))
        assert await store.get("t", "resp_0") is None and await store.get("t", "resp_2") is not None

    asyncio.run(scenario())


def test_responses_are_stored_in_the_ledgers_database(gw):
    r = client(gw).responses.create(model="gpt-4o-mini", input="where am I kept?")
    rows = gw.gateway.ledger.query("SELECT id, tenant FROM responses WHERE id = ?", (r.id,))
    assert rows and rows[0][0] == r.id and rows[0][1].startswith("key-")


@pytest.mark.parametrize("model", MODELS)
def test_input_image_by_data_url_reaches_the_model(gw, sent, model):
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    r = client(gw).responses.create(model=model, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "What is this?"}, image]}])
    assert r.output_text
    (body,) = sent
    if model.startswith("claude"):
        parts = body["messages"][-1]["content"]
        assert parts[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                        "data": "iVBORw0KGgo="}}
    else:
        assert body["input"][-1]["content"][1] == image
