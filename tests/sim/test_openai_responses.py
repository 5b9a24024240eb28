"""The simulator's OpenAI Responses API, driven by the official openai SDK."""

from __future__ import annotations

import io
import json
import time

import httpx
import openai
import pytest
from pydantic import BaseModel

from scrimp.sim.config import ModelConfig, SimConfig
from scrimp.sim.testing import run_simulator

LONG = " ".join(f"policy{i % 50} clause" for i in range(800))  # ~1600 tokens: above the 1024 minimum
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
TEXT_EVENTS = ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
               "response.output_text.done", "response.content_part.done", "response.output_item.done"]


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0)


@pytest.fixture
def o4_mini(sim_state):
    """A reasoning model in this module's simulator (refusing temperature, as real ones do)."""
    sim_state.config.models["o4-mini"] = ModelConfig("o4-mini", "openai", "cheap", reasoning=True,
                                                     rejects=["max_tokens", "temperature", "top_p"])
    yield "o4-mini"
    sim_state.config.models.pop("o4-mini", None)


def squash(types: list[str]) -> list[str]:
    """Event types with runs of deltas collapsed to one."""
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1] or not t.endswith(".delta")]


def test_text_with_instructions_matches_the_chat_endpoint(sim_url):
    c = client(sim_url)
    r = c.responses.create(model="gpt-4o-mini", input="Explain caching", instructions="Answer in one paragraph.")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4o-mini" and r.instructions == "Answer in one paragraph." and r.store is True
    [msg] = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.status == "completed"
    assert msg.id.startswith("msg_") and msg.content[0].type == "output_text" and r.output_text
    u = r.usage
    assert u.total_tokens == u.input_tokens + u.output_tokens and u.output_tokens_details.reasoning_tokens == 0
    assert u.input_tokens_details.cached_tokens == 0
    # Deterministic, and the same reply and counts as the equivalent chat request (the same engine).
    again = c.responses.create(model="gpt-4o-mini", input="Explain caching", instructions="Answer in one paragraph.")
    assert again.output_text == r.output_text and again.id != r.id
    chat = c.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "developer", "content": "Answer in one paragraph."}, {"role": "user", "content": "Explain caching"}])
    assert chat.choices[0].message.content == r.output_text
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (u.input_tokens, u.output_tokens)
    bare = c.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "Explain caching"}])
    assert bare.usage.input_tokens < u.input_tokens and bare.instructions is None


def test_stream_events_in_openai_order(sim_url):
    c = client(sim_url)
    plain = c.responses.create(model="gpt-4o-mini", input="stream me")
    with c.responses.stream(model="gpt-4o-mini", input="stream me") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert squash(types) == ["response.created", "response.in_progress", *TEXT_EVENTS, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(d.delta for d in deltas) == plain.output_text
    item_id = events[2].item.id
    assert all(e.item_id == item_id for e in events if hasattr(e, "item_id"))
    assert final.output_text == plain.output_text and final.id == events[0].response.id
    assert final.usage.output_tokens == plain.usage.output_tokens and final.status == "completed"
    # create(stream=True) is the same event stream, unparsed.
    raw = list(c.responses.create(model="gpt-4o-mini", input="stream me", stream=True))
    assert [e.type for e in raw] == types


def test_function_call_round_trip_with_previous_response_id(sim_url):
    c = client(sim_url)
    first = c.responses.create(model="gpt-4o-mini", input="What's the weather in Paris?", tools=[WEATHER],
                               tool_choice="required")
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    assert call.id.startswith("fc_") and set(json.loads(call.arguments)) == {"city"}
    assert first.status == "completed" and first.tools[0].name == "get_weather" and first.tools[0].strict is True
    second = c.responses.create(model="gpt-4o-mini", previous_response_id=first.id, tools=[WEATHER],
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": '{"temp_c": 21}'}])
    assert second.output[0].type == "message" and second.output_text
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens
    items = c.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1].call_id == call.call_id and items[1].id == call.id
    # A client holding the state itself sends the call back along with its output: the same reply.
    manual = c.responses.create(model="gpt-4o-mini", tools=[WEATHER], input=[
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}])
    assert manual.output_text == second.output_text
    # An output for no call, and a call left without its output, are refused as OpenAI refuses them.
    with pytest.raises(openai.BadRequestError, match="No tool call found"):
        c.responses.create(model="gpt-4o-mini", input=[
            {"type": "function_call_output", "call_id": "call_nope", "output": "x"}])
    with pytest.raises(openai.BadRequestError, match="No tool output found"):
        c.responses.create(model="gpt-4o-mini", previous_response_id=first.id, input="and tomorrow?")


def test_function_call_streams_its_arguments(sim_url):
    c = client(sim_url)
    tools = [dict(WEATHER, strict=True)]
    with c.responses.stream(model="gpt-4o-mini", input="Weather?", tools=tools,
                            tool_choice={"type": "function", "name": "get_weather"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert squash([e.type for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert events[2].item.arguments == "" and events[2].item.status == "in_progress"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert final.output[0].parsed_arguments == json.loads(done.arguments)  # strict tool: the SDK parses it


class Person(BaseModel):
    name: str
    age: int


class Team(BaseModel):
    lead: Person
    members: list[Person]
    remote: bool


def test_json_schema_and_json_object_answer_with_json(sim_url):
    c = client(sim_url)
    parsed = c.responses.parse(model="gpt-4o-mini", input="Invent a team", text_format=Team)
    team = parsed.output_parsed
    assert isinstance(team, Team) and isinstance(team.lead, Person)  # nested $refs resolved
    assert parsed.text.format.type == "json_schema" and parsed.text.format.name == "Team"
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "score": {"type": "integer"}},
              "required": ["city", "score"], "additionalProperties": False}
    raw = c.responses.create(model="gpt-4o", input="Rate a city",
                             text={"format": {"type": "json_schema", "name": "rating", "schema": schema,
                                              "strict": True}})
    assert set(json.loads(raw.output_text)) == {"city", "score"}
    obj = c.responses.create(model="gpt-4o", input="Reply in JSON", text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(obj.output_text), dict)
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o", input="x", text={"format": {"type": "json_schema", "schema": schema}})
    assert err.value.body["param"] == "text.format.name"


def test_previous_response_id_chains_and_stored_responses(sim_url):
    c = client(sim_url)
    one = c.responses.create(model="gpt-4o-mini", input="Hi, I am Ada.", instructions="Be nice.",
                             metadata={"ticket": "T-1"})
    two = c.responses.create(model="gpt-4o-mini", input="What is my name?", previous_response_id=one.id)
    three = c.responses.create(model="gpt-4o-mini", input="Thanks", previous_response_id=two.id)
    assert one.usage.input_tokens < two.usage.input_tokens < three.usage.input_tokens
    # Instructions do not carry over a chain; the conversation does.
    assert two.instructions is None
    same = c.responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": "Hi, I am Ada."}, {"role": "assistant", "content": one.output_text},
        {"role": "user", "content": "What is my name?"}])
    assert same.output_text == two.output_text and same.usage.input_tokens == two.usage.input_tokens

    got = c.responses.retrieve(one.id)
    assert got.id == one.id and got.output_text == one.output_text and got.metadata == {"ticket": "T-1"}
    items = c.responses.input_items.list(three.id)  # newest first by default
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"), ("message", "assistant"), ("message", "user"), ("message", "assistant"),
        ("message", "user")]
    assert items.data[0].content[0].text == "Thanks" and items.data[-1].content[0].text == "Hi, I am Ada."
    page = c.responses.input_items.list(three.id, order="asc", limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [i.id for i in page] == [i.id for i in items.data[::-1]]  # the SDK follows the cursor

    c.responses.delete(two.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(two.id)
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="again", previous_response_id=two.id)
    assert err.value.body["code"] == "previous_response_not_found" and err.value.body["param"] == "previous_response_id"
    unstored = c.responses.create(model="gpt-4o-mini", input="secret", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unstored.id)


def test_retrieve_with_stream_replays_the_events(sim_url):
    c = client(sim_url)
    r = c.responses.create(model="gpt-4o-mini", input="replay me", max_output_tokens=40)
    events = list(c.responses.retrieve(r.id, stream=True))
    assert events[0].type == "response.created" and events[-1].response.id == r.id
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == r.output_text
    later = list(c.responses.retrieve(r.id, stream=True, starting_after=3))
    assert [e.sequence_number for e in later] == [e.sequence_number for e in events[4:]]


def test_repeated_long_prefix_reports_cached_tokens(sim_url):
    c = client(sim_url)
    first = c.responses.create(model="gpt-4o-mini", instructions=LONG, input="first", max_output_tokens=16)
    second = c.responses.create(model="gpt-4o-mini", instructions=LONG, input="second", max_output_tokens=16)
    assert first.usage.input_tokens_details.cached_tokens == 0
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached >= 1024 and (cached - 1024) % 128 == 0 and cached <= second.usage.input_tokens
    # A chain grows its prefix: the next turn reads the earlier turn from the cache.
    long_turn = c.responses.create(model="gpt-4o", input=LONG + " question one", max_output_tokens=16)
    chained = c.responses.create(model="gpt-4o", input="question two", previous_response_id=long_turn.id,
                                 max_output_tokens=16)
    assert chained.usage.input_tokens_details.cached_tokens >= 1024
    # The prompt cache is the chat endpoint's: a chat call with the same prefix reads it too.
    chat = c.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=[
        {"role": "developer", "content": LONG}, {"role": "user", "content": "third"}])
    assert chat.usage.prompt_tokens_details.cached_tokens >= 1024


def test_max_output_tokens_cuts_a_reply_as_incomplete(sim_url):
    c = client(sim_url)
    r = c.responses.create(model="gpt-4o-mini", input="Write a long essay about costs", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.usage.output_tokens <= 16 and r.max_output_tokens == 16
    with c.responses.stream(model="gpt-4o-mini", input="Write a long essay about costs",
                            max_output_tokens=16) as stream:
        types = [e.type for e in stream]
    assert types[-1] == "response.incomplete" and "response.completed" not in types


def test_reasoning_model_reports_reasoning_tokens(sim_url, o4_mini):
    c = client(sim_url)
    low = c.responses.create(model=o4_mini, input="Plan a migration", reasoning={"effort": "low"})
    high = c.responses.create(model=o4_mini, input="Plan a migration", reasoning={"effort": "high"})
    for r in (low, high):
        assert [o.type for o in r.output] == ["reasoning", "message"] and r.output[0].id.startswith("rs_")
        reasoning = r.usage.output_tokens_details.reasoning_tokens
        assert reasoning > 0 and r.usage.output_tokens > reasoning
    assert high.usage.output_tokens_details.reasoning_tokens > low.usage.output_tokens_details.reasoning_tokens
    assert low.reasoning.effort == "low"
    # The chat endpoint reasons the same way (reasoning_effort): a gateway translating gets the same usage.
    chat = c.chat.completions.create(model=o4_mini, reasoning_effort="low",
                                      messages=[{"role": "user", "content": "Plan a migration"}])
    assert chat.usage.completion_tokens_details.reasoning_tokens == low.usage.output_tokens_details.reasoning_tokens
    assert chat.usage.completion_tokens == low.usage.output_tokens
    assert chat.choices[0].message.content == low.output_text
    # Reasoning counts against max_output_tokens, and may use all of it: no message then.
    cut = c.responses.create(model=o4_mini, input="Plan a migration", reasoning={"effort": "high"},
                             max_output_tokens=16)
    assert cut.status == "incomplete" and [o.type for o in cut.output] == ["reasoning"]
    assert cut.usage.output_tokens == cut.usage.output_tokens_details.reasoning_tokens == 16
    # Stateless clients get the reasoning back encrypted and send it with the next turn.
    enc = c.responses.create(model=o4_mini, input="hi", store=False, include=["reasoning.encrypted_content"])
    assert enc.output[0].encrypted_content
    nxt = c.responses.create(model=o4_mini, store=False, input=[
        {"role": "user", "content": "hi"}, enc.output[0].model_dump(exclude_none=True),
        {"role": "assistant", "content": enc.output_text}, {"role": "user", "content": "more"}])
    assert nxt.status == "completed"
    with c.responses.stream(model=o4_mini, input="Plan a migration") as stream:
        types = squash([e.type for e in stream])
    assert types[2:4] == ["response.output_item.added", "response.output_item.done"]  # the reasoning item
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model=o4_mini, input="x", temperature=0.2)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="x", reasoning={"effort": "high"})
    assert err.value.body["param"] == "reasoning.effort" and "not supported with this model" in err.value.message


def test_errors_in_openai_shape(sim_url, sim_state):
    c = client(sim_url)
    with pytest.raises(openai.NotFoundError) as err:
        c.responses.create(model="gpt-nope", input="x")
    assert err.value.body["code"] == "model_not_found" and err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}])
    assert err.value.body["param"] == "tools[0].type" and "not supported" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=5)
    assert err.value.body["param"] == "max_output_tokens" and err.value.body["code"] == "integer_below_min_value"
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": [
            {"type": "output_text", "text": "x"}]}])
    assert err.value.body["param"] == "input[0].content[0].type"
    with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'messages'"):
        c.responses.create(model="gpt-4o-mini", input="x", extra_body={"messages": []})
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="x " * 130_000)
    assert err.value.body["code"] == "context_length_exceeded" and err.value.body["param"] == "input"
    # Faults and rate limits are the chat endpoint's, and so are the counters.
    sim_state.faults.script("gpt-4o-mini", 503, 429)
    with pytest.raises(openai.InternalServerError) as err:
        c.responses.create(model="gpt-4o-mini", input="x")
    assert err.value.status_code == 503 and err.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError) as err:
        c.responses.create(model="gpt-4o-mini", input="x")
    assert err.value.response.headers["retry-after"] == "1"
    ok = c.responses.create(model="gpt-4o-mini", input="x")
    snap = httpx.get(sim_url + "/sim/counters").json()
    assert snap["endpoints"]["responses"] == 9
    row = snap["models"]["gpt-4o-mini"]
    assert row["errors"] == 7 and row["output_tokens"] == ok.usage.output_tokens


def test_dropped_stream_ends_without_a_final_event(sim_url, sim_state):
    c = client(sim_url)
    sim_state.faults.script("gpt-4o-mini", "drop")
    seen = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        for event in c.responses.create(model="gpt-4o-mini", input="long answer please", stream=True):
            seen.append(event.type)
    assert "response.created" in seen and "response.completed" not in seen


def test_batch_api_runs_responses_like_the_endpoint():
    with run_simulator(SimConfig(batch_delay_s=0.2)) as (url, _app):
        c = client(url)
        bodies = [{"model": "gpt-4o-mini", "input": f"question {i}", "instructions": "Be brief."} for i in range(2)]
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses", "body": b}
                 for i, b in enumerate(bodies)]
        upload = c.files.create(file=("in.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                                purpose="batch")
        batch = c.batches.create(input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h")
        deadline = time.monotonic() + 10
        while batch.status != "completed":
            assert time.monotonic() < deadline, batch
            time.sleep(0.05)
            batch = c.batches.retrieve(batch.id)
        out = [json.loads(x) for x in c.files.content(batch.output_file_id).text.splitlines()]
        assert len(out) == 2
        for line in out:
            got = line["response"]["body"]
            direct = c.responses.create(**bodies[int(line["custom_id"][1:])])
            assert got["object"] == "response" and got["output"][0]["content"][0]["text"] == direct.output_text
            assert got["usage"]["output_tokens"] == direct.usage.output_tokens


def test_web_search_is_a_hosted_tool_call_then_a_cited_answer(sim_url, sim_state):
    c = client(sim_url)
    r = c.responses.create(model="gpt-4o-mini", input="Latest news about caching?", tools=[{"type": "web_search"}])
    search, message = r.output
    assert search.type == "web_search_call" and search.status == "completed" and search.id.startswith("ws_")
    assert search.action.type == "search" and search.action.query == "Latest news about caching?"
    assert search.action.sources[0].url == "https://example.com/latest-news-about-caching"
    (citation,) = message.content[0].annotations
    assert citation.type == "url_citation" and citation.url == search.action.sources[0].url
    assert (citation.start_index, citation.end_index) == (0, len(r.output_text)) and r.output_text
    assert r.tools[0].type == "web_search" and r.tools[0].search_context_size == "medium"
    plain = c.responses.create(model="gpt-4o-mini", input="Latest news about caching?")
    assert plain.output_text == r.output_text and plain.usage.input_tokens == r.usage.input_tokens  # no tokens added
    assert sim_state.counters.snapshot()["endpoints"]["responses.web_search"] == 1

    # Streamed: the search's own events, then the text with its annotation, in OpenAI's order.
    with c.responses.stream(model="gpt-4o-mini", input="Latest news about caching?",
                            tools=[{"type": "web_search_preview"}]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert squash([e.type for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.web_search_call.in_progress", "response.web_search_call.searching",
        "response.web_search_call.completed", "response.output_item.done", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.annotation.added",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert events[2].item.type == "web_search_call" and events[2].item.status == "in_progress"
    assert final.output[0].action.query == "Latest news about caching?" and final.output_text == r.output_text
    assert final.output[1].content[0].annotations[0].url == citation.url

    # Sent back (stateless) or chained, the search stays in the conversation; tool_choice none or a forced
    # function call makes no search.
    again = c.responses.create(model="gpt-4o-mini", tools=[{"type": "web_search"}], tool_choice="none",
                               input=[{"role": "user", "content": "Latest news about caching?"},
                                      *[o.model_dump() for o in r.output], {"role": "user", "content": "More?"}])
    assert [o.type for o in again.output] == ["message"]
    chained = c.responses.create(model="gpt-4o-mini", previous_response_id=r.id, input="And in French?",
                                 tools=[{"type": "web_search"}, WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"})
    assert [o.type for o in chained.output] == ["function_call"]
    items = c.responses.input_items.list(chained.id, order="asc").data
    assert [i.type for i in items] == ["message", "web_search_call", "message", "message"]
    forced = c.responses.create(model="gpt-4o-mini", input="Search it", tools=[{"type": "web_search"}],
                                tool_choice={"type": "web_search_preview"})
    assert forced.output[0].type == "web_search_call"
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o-mini", input="x", tool_choice={"type": "web_search_preview"})
    assert err.value.body["param"] == "tool_choice"
