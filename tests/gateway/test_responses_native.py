"""The Responses API sent natively to an OpenAI model (the simulator's POST /v1/responses), with the official
openai SDK: the client's own body upstream, hosted tools (web_search) passed through untouched and refused for
an Anthropic model, previous_response_id resolved by scrimp across native and translated turns, the levers'
edits (prompt_cache_key, max_output_tokens, a rebuilt conversation), fallbacks, exact-cache hits, and ledger
rows priced by hand."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import openai
import pytest

from scrimp.canonical import ChatRequest
from scrimp.formats import responses as fmt
from scrimp.formats import responses_upstream as native
from scrimp.gateway.app import create_app
from scrimp.gateway.config import parse
from scrimp.sim.config import ModelConfig
from scrimp.sim.testing import serve_app

SEARCH = {"type": "web_search"}
QUESTION = "Latest news about caching?"
SOURCE = "https://example.com/latest-news-about-caching"
LONG = " ".join(f"policy{i % 50} clause" for i in range(800))  # ~1600 tokens: above OpenAI's 1024 minimum
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
STREAMED_SEARCH = [  # a streamed answer with a web search, delta runs squashed
    "response.created", "response.in_progress", "response.output_item.added",
    "response.web_search_call.in_progress", "response.web_search_call.searching",
    "response.web_search_call.completed", "response.output_item.done", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.annotation.added",
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]


def gpt_mini(input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    """gpt-4o-mini as OpenAI prices it, by hand: $0.15 / M input, $0.075 / M cached input, $0.60 / M output."""
    return ((input_tokens - cached) * 0.15 + cached * 0.075 + output_tokens * 0.60) / 1e6


def client(url: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="key-a", max_retries=0, default_headers=headers or None)


def endpoints(sim: Any) -> dict[str, int]:
    return sim.counters.snapshot()["endpoints"]


def squash(kinds: list[str]) -> list[str]:
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1] or not k.endswith(".delta")]


@pytest.fixture
def sent(gw, monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of every upstream call the gateway makes, in order."""
    return _spy(gw.gateway.upstream, monkeypatch)


def _spy(upstream: Any, monkeypatch: Any) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    original = upstream.body

    def body(spec, request):
        path, payload = original(spec, request)
        calls.append((path, payload))
        return path, payload

    monkeypatch.setattr(upstream, "body", body)
    return calls


# -- an OpenAI model is called through its own Responses API ----------------------------------------------------

def test_openai_model_is_answered_by_its_responses_endpoint(gw, sent):
    c = client(gw.url)
    r = c.responses.create(model="gpt-4o-mini", input="hello there", instructions="Be brief.", max_output_tokens=200,
                           metadata={"feature": "faq"})
    assert r.status == "completed" and r.output_text and r.id.startswith("resp_") and r.model == "gpt-4o-mini"
    (path, body), = sent
    assert path == "/responses" and body == {"model": "gpt-4o-mini", "input": [{"role": "user",
                                                                                "content": "hello there"}],
                                             "instructions": "Be brief.", "max_output_tokens": 200,
                                             "metadata": {"feature": "faq"}, "store": False}
    events = list(c.responses.create(model="gpt-4o-mini", input="describe a cache", stream=True))
    assert squash([e.type for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.id == events[-1].response.id == c.responses.retrieve(events[-1].response.id).id
    assert sent[1][1]["stream"] is True
    call = c.responses.create(model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER], tool_choice="required")
    (fn,) = call.output
    assert fn.type == "function_call" and fn.name == "get_weather" and "city" in json.loads(fn.arguments)
    streamed = list(c.responses.create(model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER],
                                       tool_choice="required", stream=True))
    assert [e.type for e in streamed][-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                                               "response.completed"]
    assert streamed[-1].response.output[0].call_id == streamed[2].item.call_id
    answer = c.responses.create(model="gpt-4o-mini", previous_response_id=call.id, tools=[WEATHER],
                                input=[{"type": "function_call_output", "call_id": fn.call_id, "output": "Sunny"}])
    assert answer.output_text and answer.status == "completed"
    assert endpoints(gw.sim) == {"responses": 5}  # no Chat Completions call
    rows = gw.rows()
    assert [r["inbound"] for r in rows] == ["responses"] * 5 and rows[0]["feature"] == "faq"
    for row in rows:
        assert row["status"] == "ok" and row["cost_usd"] == pytest.approx(
            gpt_mini(row["input_tokens"] + row["cache_read_tokens"], row["output_tokens"], row["cache_read_tokens"]))
    assert rows[0]["input_tokens"] == r.usage.input_tokens and rows[0]["output_tokens"] == r.usage.output_tokens
    assert rows[0]["cost_usd"] == pytest.approx(gpt_mini(r.usage.input_tokens, r.usage.output_tokens))


# -- hosted tools ------------------------------------------------------------------------------------------------

def test_web_search_passes_through_to_an_openai_model(gw, sent):
    c = client(gw.url)
    raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH])
    r = raw.parse()
    search, message = r.output
    assert search.type == "web_search_call" and search.id.startswith("ws_") and search.action.query == QUESTION
    assert search.action.sources[0].url == SOURCE
    (citation,) = message.content[0].annotations
    assert citation.type == "url_citation" and citation.url == SOURCE and citation.end_index == len(r.output_text)
    assert r.tools[0].type == "web_search" and sent[0][1]["tools"] == [SEARCH]
    assert endpoints(gw.sim) == {"responses": 1, "responses.web_search": 1}
    assert c.responses.retrieve(r.id).model_dump() == r.model_dump()  # stored as it was answered
    (row,) = gw.rows()
    assert row["served_model"] == "gpt-4o-mini" and row["status"] == "ok"
    assert row["cost_usd"] == pytest.approx(gpt_mini(r.usage.input_tokens, r.usage.output_tokens))
    assert float(raw.headers["x-scrimp-cost-usd"]) == pytest.approx(row["cost_usd"], abs=1e-8)

    events = list(c.responses.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH], stream=True))
    assert squash([e.type for e in events]) == STREAMED_SEARCH
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.id == events[0].response.id and final.tools[0].type == "web_search"
    assert [o.type for o in final.output] == ["web_search_call", "message"] and final.output_text == r.output_text
    assert events[2].item.id == final.output[0].id  # the upstream's items, untouched
    assert c.responses.retrieve(final.id).output[0].action.query == QUESTION

    # The search goes back upstream as it was in a follow-up (scrimp holds the conversation).
    follow = c.responses.create(model="gpt-4o-mini", previous_response_id=r.id, input="Tell me more.", tools=[SEARCH])
    assert follow.output_text and follow.previous_response_id == r.id
    sent_input = sent[-1][1]["input"]
    assert sent_input[1] == search.model_dump(exclude_none=True) and sent_input[-1] == {"role": "user",
                                                                                         "content": "Tell me more."}
    assert [i.type for i in c.responses.input_items.list(follow.id, order="asc").data] == [
        "message", "web_search_call", "message", "message"]


def test_hosted_tools_are_refused_for_an_anthropic_model(gw):
    c = client(gw.url)
    for kwargs, param in (({"tools": [SEARCH]}, "tools[0].type"),
                          ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice")):
        with pytest.raises(openai.BadRequestError) as exc:
            c.responses.create(model="claude-haiku-4-5", input=QUESTION, **kwargs)
        assert exc.value.param == param and "Anthropic model" in exc.value.message
        assert exc.value.body["type"] == "invalid_request_error"
    r = c.responses.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH], store=False)
    with pytest.raises(openai.BadRequestError) as exc:  # a search sent back to an Anthropic model (stateless)
        c.responses.create(model="claude-haiku-4-5", input=[{"role": "user", "content": QUESTION},
                                                            *[o.model_dump() for o in r.output]])
    assert exc.value.param == "input[1].type" and "'web_search_call'" in exc.value.message
    assert endpoints(gw.sim) == {"responses": 1, "responses.web_search": 1}


def test_exact_cache_hit_with_a_hosted_tool_is_the_upstreams_output_with_fresh_ids(gw):
    c = client(gw.url)
    kw: dict[str, Any] = {"model": "gpt-4o-mini", "input": QUESTION, "tools": [SEARCH], "temperature": 0}
    first = c.responses.with_raw_response.create(**kw)
    second = c.responses.with_raw_response.create(**kw)
    a, b = first.parse(), second.parse()
    assert first.headers["x-scrimp-cache"] == "miss" and second.headers["x-scrimp-cache"] == "exact"
    assert [o.type for o in b.output] == ["web_search_call", "message"] and b.id != a.id
    assert b.output[0].id != a.output[0].id and b.output[0].id.startswith("ws_")
    assert b.output[0].action == a.output[0].action and b.output[1].content == a.output[1].content
    events = list(c.responses.create(stream=True, **kw))  # a streamed hit replays the items
    assert squash([e.type for e in events]) == STREAMED_SEARCH
    assert events[-1].response.output[1].content[0].annotations[0].url == SOURCE
    assert c.responses.retrieve(events[-1].response.id).output[0].type == "web_search_call"
    # the hosted tool is part of the key: the same question without it is another request
    plain = c.responses.with_raw_response.create(model="gpt-4o-mini", input=QUESTION, temperature=0)
    assert plain.headers["x-scrimp-cache"] == "miss" and [o.type for o in plain.parse().output] == ["message"]
    assert endpoints(gw.sim)["responses"] == 2
    miss, hit, streamed, _ = gw.rows()
    cost = gpt_mini(a.usage.input_tokens, a.usage.output_tokens)
    assert miss["cost_usd"] == pytest.approx(cost)
    for row in (hit, streamed):
        assert row["cache"] == "exact" and row["cost_usd"] == 0 and row["saved_usd"] == pytest.approx(cost)


# -- previous_response_id across native and translated turns ---------------------------------------------------

def test_chain_across_openai_and_anthropic_models(gw, sent):
    c = client(gw.url)
    one = c.responses.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH], instructions="Be brief.")
    two = c.responses.create(model="claude-haiku-4-5", input="Summarise that.", previous_response_id=one.id)
    three = c.responses.create(model="gpt-4o-mini", input="And now in French.", previous_response_id=two.id)
    assert three.output_text and [p for p, _ in sent] == ["/responses", "/v1/messages", "/responses"]
    messages = sent[1][1]["messages"]  # the Anthropic model: the search left out, its cited answer kept
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [{"type": "text", "text": one.output_text}]
    items = sent[2][1]["input"]
    assert [i.get("type") for i in items] == ["message", "web_search_call", "message", "message", "message",
                                              None]
    assert items[1]["id"] == one.output[0].id and items[4]["content"][0]["text"] == two.output_text
    assert items[3] == {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                        "text": "Summarise that."}]}
    assert items[-1] == {"role": "user", "content": "And now in French."} and "instructions" not in sent[2][1]
    assert endpoints(gw.sim) == {"responses": 2, "responses.web_search": 1, "messages": 1}


# -- the levers' edits, fallbacks, prompt caching, reasoning ----------------------------------------------------

@pytest.fixture
def native_gw(sim_upstream, tmp_path):
    """gpt-4o-mini (falling back to claude-haiku-4-5, no retries, streams cut after 0.5 s of silence) and o4-mini,
    a reasoning model, behind a ledger and the prompt-cache planner."""
    sim_url, sim_app = sim_upstream
    sim = sim_app.state.sim
    sim.reset()
    sim.config.models["o4-mini"] = ModelConfig("o4-mini", "openai", reasoning=True,
                                               rejects=["max_tokens", "temperature", "top_p"])
    cfg = parse({"models": [
        {"name": "gpt-4o-mini", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k",
         "fallbacks": ["claude-haiku-4-5"]},
        {"name": "claude-haiku-4-5", "provider": "anthropic", "base_url": sim_url, "api_key": "k"},
        {"name": "o4-mini", "provider": "openai", "base_url": sim_url + "/v1", "api_key": "k",
         "rejects": ["temperature", "top_p"]}],
        "upstream": {"retries": 0, "idle_timeout_s": 0.5}, "stages": [{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                                               {"name": "prompt_cache"}]})
    app = create_app(cfg)
    try:
        with serve_app(app) as url:
            yield url, app, sim
    finally:
        sim.config.models.pop("o4-mini", None)


def _rows(app: Any) -> list[tuple]:
    store = app.state.gateway.ledger
    store.flush()
    return store.query("SELECT served_model, input_tokens, cache_read_tokens, output_tokens, cost_usd, status "
                       "FROM calls ORDER BY ts")


def test_prompt_cache_key_from_the_planner_and_cached_input_priced_by_hand(native_gw, monkeypatch):
    url, app, _ = native_gw
    sent = _spy(app.state.gateway.upstream, monkeypatch)
    c = client(url)
    first = c.responses.create(model="gpt-4o-mini", instructions=LONG, input="First question?")
    second = c.responses.create(model="gpt-4o-mini", instructions=LONG, input="Second question?")
    key = sent[0][1]["prompt_cache_key"]
    assert key.startswith("scrimp-") and sent[1][1]["prompt_cache_key"] == key  # the planner's, natively
    assert first.usage.input_tokens_details.cached_tokens == 0
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached >= 1024
    (_, in1, c1, out1, usd1, _), (_, in2, c2, out2, usd2, _) = _rows(app)
    assert (in1, c1, out1) == (first.usage.input_tokens, 0, first.usage.output_tokens)
    assert (in2, c2, out2) == (second.usage.input_tokens - cached, cached, second.usage.output_tokens)
    assert usd1 == pytest.approx(gpt_mini(first.usage.input_tokens, first.usage.output_tokens))
    assert usd2 == pytest.approx(gpt_mini(second.usage.input_tokens, second.usage.output_tokens, cached))
    c.responses.create(model="gpt-4o-mini", input="mine", prompt_cache_key="client-key")
    assert sent[2][1]["prompt_cache_key"] == "client-key"  # the client's own key is kept


def test_a_failing_openai_model_falls_back_to_anthropic_translated_unless_a_hosted_tool_needs_openai(native_gw,
                                                                                                   monkeypatch):
    url, app, sim = native_gw
    sent = _spy(app.state.gateway.upstream, monkeypatch)
    c = client(url)
    sim.faults.script("gpt-4o-mini", 503)
    raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input="hello there", max_output_tokens=100)
    r = raw.parse()
    assert raw.headers["x-scrimp-model"] == "claude-haiku-4-5" and r.output_text and r.output[0].type == "message"
    assert [p for p, _ in sent] == ["/responses", "/v1/messages"]
    assert sent[1][1]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    assert sent[1][1]["max_tokens"] == 100
    sim.faults.script("gpt-4o-mini", 503)
    with pytest.raises(openai.InternalServerError) as exc:  # no Anthropic fallback for a web search
        c.responses.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH])
    assert exc.value.status_code == 503 and len(sent) == 3
    assert endpoints(sim) == {"responses": 2, "messages": 1}
    statuses = [row[5] for row in _rows(app)]
    assert statuses == ["ok", "error"]


def test_native_calls_are_retried_like_any_other(gw):
    gw.sim.faults.script("gpt-4o-mini", 503, 429)
    r = client(gw.url).responses.create(model="gpt-4o-mini", input="hello there", tools=[SEARCH])
    assert r.output_text and endpoints(gw.sim)["responses"] == 3
    (row,) = gw.rows()
    assert row["status"] == "ok" and json.loads(row["decisions"])["retries"] == 2


def test_a_native_stream_that_goes_silent_is_cut_with_error_and_failed(native_gw):
    url, app, sim = native_gw
    sim.faults.script("gpt-4o-mini", "stall")
    events = list(client(url).responses.create(model="gpt-4o-mini", input="describe a cache", stream=True))
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds and kinds[-2:] == ["error", "response.failed"]
    assert "no data for 0.5s" in events[-2].message and events[-1].response.status == "failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (row,) = _rows(app)
    assert row[0] == "gpt-4o-mini" and row[5] == "error" and row[3] > 0  # what was sent is billed


def test_reasoning_items_go_back_upstream_only_with_their_encrypted_content(native_gw, monkeypatch):
    url, app, _ = native_gw
    sent = _spy(app.state.gateway.upstream, monkeypatch)
    c = client(url)
    one = c.responses.create(model="o4-mini", input="Prove it.", temperature=0.5, reasoning={"effort": "low"})
    assert [o.type for o in one.output] == ["reasoning", "message"] and "temperature" not in sent[0][1]
    assert one.usage.output_tokens_details.reasoning_tokens > 0
    c.responses.create(model="o4-mini", input="Go on.", previous_response_id=one.id)
    # store: false upstream, so OpenAI could not find a reasoning item by its id: it is left out
    # (its answer's message goes as text, without the id OpenAI would pair with it)
    assert [i.get("type") for i in sent[1][1]["input"]] == ["message", None, None]
    assert sent[1][1]["input"][1] == {"role": "assistant", "content": one.output_text}
    kept = c.responses.create(model="o4-mini", input="Prove it.", include=["reasoning.encrypted_content"])
    assert kept.output[0].encrypted_content
    c.responses.create(model="o4-mini", input="Go on.", previous_response_id=kept.id,
                       include=["reasoning.encrypted_content"])
    assert [i.get("type") for i in sent[3][1]["input"]] == ["message", "reasoning", "message", None]
    assert sent[3][1]["input"][1]["encrypted_content"] == kept.output[0].encrypted_content
    assert sent[3][1]["include"] == ["reasoning.encrypted_content"]
    for served, input_tokens, cached, output_tokens, usd, _ in _rows(app):  # o4-mini: $1.10 / M in, $4.40 / M out
        assert served == "o4-mini" and usd == pytest.approx(
            ((input_tokens + cached) * 1.10 - cached * 0.825 + output_tokens * 4.40) / 1e6)


# -- building the upstream body ---------------------------------------------------------------------------------

def _parsed(body: dict[str, Any]) -> ChatRequest:
    return fmt.parse_request(body).request


def test_levers_edits_reach_the_native_body():
    req = _parsed({"model": "gpt-4o-mini", "input": "hi", "temperature": 0.2, "max_output_tokens": 500,
                   "stream": True, "stream_options": {"include_obfuscation": False}, "tools": [SEARCH, WEATHER]})
    edited = dataclasses.replace(req.copy(), max_tokens=64, prompt_cache_key="scrimp-k", temperature=None,
                                 stream=False)
    body = native.build_request(edited, "gpt-4o-mini-2024-07-18")
    assert body == {"model": "gpt-4o-mini-2024-07-18", "input": [{"role": "user", "content": "hi"}],
                    "max_output_tokens": 64, "prompt_cache_key": "scrimp-k", "tools": [SEARCH, WEATHER],
                    "store": False}
    streamed = native.build_request(req, "m")
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_obfuscation": False}


def test_a_conversation_a_stage_changed_is_rebuilt_from_the_canonical_request():
    items = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Weather?"},
             {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"},
             {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
             {"role": "user", "content": [{"type": "input_text", "text": "Thanks. More?"}]}]
    req = _parsed({"model": "gpt-4o-mini", "input": items, "instructions": "Be brief.", "tools": [SEARCH, WEATHER]})
    marked = req.copy()  # prompt-cache markers change no answer: the client's body still goes
    marked.system = [{**marked.system[0], "cache_control": {"type": "ephemeral"}}, *marked.system[1:]]
    assert native.build_request(marked, "m")["input"] == items
    trimmed = req.copy()  # a stage that dropped a sentence from the last turn
    last = trimmed.messages[-1]  # [the tool output, "Thanks. More?"]
    trimmed.messages[-1] = {**last, "content": [last["content"][0], {"type": "text", "text": "More?"}]}
    trimmed.tools = trimmed.tools[:0]
    body = native.build_request(trimmed, "m")
    assert body["instructions"] == "Be brief.\n\nBe kind." and body["tools"] == [SEARCH]
    assert body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "More?"}]}]


def test_only_openai_items_are_kept_for_the_upstream_and_refused_for_anthropic():
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    thought = {"type": "reasoning", "id": "rs_1", "summary": []}
    parsed = fmt.parse_request({"model": "m", "input": [{"role": "user", "content": "q"}, search, thought],
                                "tools": [SEARCH], "tool_choice": {"type": "web_search_preview"}})
    req = parsed.request
    assert req.tools == [] and req.tool_choice is None and [m["role"] for m in req.messages] == ["user"]
    assert [e.param for e in req.native.only_openai] == ["input[1].type", "tools[0].type", "tool_choice"]
    assert native.refusal(req) is req.native.only_openai[0]
    assert [i["type"] for i in parsed.items] == ["message", "web_search_call", "reasoning"]
    body = native.build_request(req, "m")
    assert body["input"] == [{"role": "user", "content": "q"}, search]  # a reasoning item OpenAI could not find
    assert body["tool_choice"] == {"type": "web_search_preview"}
    assert req.native.opaque["tools"] == [SEARCH] and req.native.opaque["items"][0] == {
        k: v for k, v in search.items() if k != "id"}


def test_an_answer_whose_reasoning_item_is_left_out_goes_without_its_ids():
    thought = {"type": "reasoning", "id": "rs_1", "summary": []}
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}",
            "status": "completed"}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}
    output = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    kept = {**thought, "id": "rs_2", "encrypted_content": "x"}
    items = native.client_items([{"role": "user", "content": "go"}, thought, call, output, message, kept,
                                 dict(call, id="fc_2")])
    assert items == [{"role": "user", "content": "go"},
                     {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}, output,
                     message, kept, dict(call, id="fc_2")]  # a turn later, or after a reasoning item kept: as sent
    assert native.stored_items([thought, message]) == [{"role": "assistant", "content": "Done."}]


def test_an_upstream_response_read_back():
    data = {"id": "resp_up", "model": "gpt-4o-mini", "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
                       {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
                       {"type": "message", "id": "msg_1", "role": "assistant", "status": "incomplete",
                        "content": [{"type": "output_text", "text": "Hel", "annotations": []}]}],
            "usage": {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1536}, "output_tokens": 40,
                      "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 2040}}
    resp = native.parse_response(data)
    assert resp.content == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
                            {"type": "text", "text": "Hel"}]
    assert resp.stop_reason == "max_tokens" and resp.output_items == data["output"]
    u = resp.usage
    assert (u.input, u.cache_read, u.output, u.reasoning) == (464, 1536, 40, 12)
    with pytest.raises(Exception) as exc:
        native.parse_response({"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow"}})
    assert exc.value.status == 429


def test_an_upstream_stream_read_back():
    import asyncio

    events = [{"type": "response.created", "response": {"id": "resp_up", "model": "gpt-4o-mini"}},
              {"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"}},
              {"type": "response.web_search_call.searching", "output_index": 0, "item_id": "ws_1"},
              {"type": "response.output_item.added", "output_index": 1,
               "item": {"type": "message", "id": "msg_1", "content": []}},
              {"type": "response.output_text.delta", "output_index": 1, "item_id": "msg_1", "delta": "Hi"}]

    async def lines():
        for n, event in enumerate(events):
            yield "event: " + event["type"]
            yield "data: " + json.dumps({**event, "sequence_number": n})
            yield ""

    async def run() -> tuple[list[Any], Any]:
        state: dict[str, Any] = {}
        got = []
        with pytest.raises(Exception) as exc:  # cut before response.completed
            async for event in native.parse_stream(lines(), state):
                got.append(event)
        assert exc.value.status == 502
        return got, native.assemble(state)

    got, partial = asyncio.run(run())
    assert [(e.kind, e.raw["type"]) for e in got] == [
        ("native", "response.output_item.added"), ("native", "response.web_search_call.searching"),
        ("native", "response.output_item.added"), ("text", "response.output_text.delta")]
    assert got[-1].text == "Hi" and partial.content == [{"type": "text", "text": "Hi"}] and partial.id == "resp_up"


def test_a_model_without_the_responses_api_gets_chat_completions_and_refuses_hosted_tools(gw, sent):
    gw.gateway.config.models["gpt-4o-mini"].responses_api = False  # e.g. a vLLM server behind an OpenAI name
    before = endpoints(gw.sim)
    r = client(gw.url).responses.create(model="gpt-4o-mini", input="What is 2 plus 2?")
    assert r.output_text and r.object == "response"
    assert [path for path, _ in sent] == ["/chat/completions"]
    after = endpoints(gw.sim)
    assert after.get("responses", 0) == before.get("responses", 0)
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw.url).responses.create(model="gpt-4o-mini", input=QUESTION, tools=[SEARCH])
    assert "web_search" in str(exc.value)
