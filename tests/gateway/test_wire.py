"""The wire surface as a new user meets it, through the official SDKs: streams retried before their first byte,
n > 1 streamed, stream timeouts, embeddings and token counts retried, errors in each API's shape, the models
endpoint, JSON answers from Anthropic models, and parameters each API refuses."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import parse
from scrimp.sim.config import Faults, ModelConfig, SimConfig, normalise_prompt
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.tokens import count_tokens

MSG = [{"role": "user", "content": "hello there"}]
LONG_PROMPT = "Write the long report."
LONG_ANSWER = ("alpha beta gamma delta " * 520).strip()  # > 2,000 tokens
TIMEOUT_S, FIRST_BYTE_S, IDLE_S = 0.6, 0.5, 0.4


@dataclass
class Wire:
    url: str
    app: Any
    sim_url: str
    sim: Any

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="k", max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="k", max_retries=0)

    def models(self) -> dict[str, dict[str, int]]:
        return self.sim.counters.snapshot()["models"]

    def endpoint_hits(self, name: str) -> int:
        return self.sim.counters.snapshot()["endpoints"].get(name, 0)

    def row(self, request_id: str) -> dict[str, Any]:
        store = self.app.state.gateway.ledger
        deadline = time.monotonic() + 10
        while True:
            store.flush()
            got = store.query("SELECT status, served_model, decisions, error, output_tokens, cost_usd FROM calls "
                              "WHERE request_id = ?", (request_id,))
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        (status, served, decisions, error, output, cost), = got
        return {"status": status, "served_model": served, "decisions": json.loads(decisions or "{}"),
                "error": error, "output_tokens": output, "cost_usd": cost}


@pytest.fixture(scope="module")
def wire_server(tmp_path_factory):
    sim_cfg = SimConfig(models={m.name: m for m in [
        ModelConfig("gpt-4o-mini", "openai", faults=Faults(slow_ms=3000)),
        ModelConfig("gpt-4o", "openai", faults=Faults(rate_500=1.0)),
        ModelConfig("gpt-4.1", "openai", per_token_ms=0.6),  # a 2,000-token answer takes over a second
        ModelConfig("gpt-4.1-mini", "openai", ttft_ms=1500),  # slower to start than the first-byte timeout
        ModelConfig("claude-haiku-4-5", "anthropic"),
        ModelConfig("claude-sonnet-4-6", "anthropic"),
        ModelConfig("text-embedding-3-small", "openai", kind="embedding", context_window=8191),
    ]}, workload={normalise_prompt(LONG_PROMPT): {"answer": LONG_ANSWER, "difficulty": 0.0}})
    with run_simulator(sim_cfg) as (sim_url, sim_app):
        def model(name: str, provider: str, **more: Any) -> dict[str, Any]:
            base = sim_url + "/v1" if provider == "openai" else sim_url
            return {"name": name, "provider": provider, "base_url": base, "api_key": "k", **more}

        cfg = parse({
            "models": [model("gpt-4o-mini", "openai"),
                       model("gpt-4o", "openai", fallbacks=["claude-sonnet-4-6", "gpt-4o-mini"]),
                       model("gpt-4.1", "openai"), model("gpt-4.1-mini", "openai"),
                       model("claude-haiku-4-5", "anthropic"), model("claude-sonnet-4-6", "anthropic"),
                       model("text-embedding-3-small", "openai")],
            "upstream": {"retries": 2, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": TIMEOUT_S,
                         "first_byte_timeout_s": FIRST_BYTE_S, "idle_timeout_s": IDLE_S},
            "max_body_bytes": 64 * 1024,
            "stages": [{"name": "ledger", "path": str(tmp_path_factory.mktemp("wire") / "ledger.db")}]})
        app = create_app(cfg)
        with serve_app(app) as url:
            yield Wire(url, app, sim_url, sim_app.state.sim)


@pytest.fixture
def wire(wire_server):
    wire_server.sim.reset()  # counters, fault scripts and draws
    return wire_server


def _openai_stream(client: openai.OpenAI, **kwargs: Any) -> tuple[dict[int, str], dict[int, str], Any]:
    """Texts and finish reasons per choice index, and the response headers."""
    raw = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    texts: dict[int, str] = defaultdict(str)
    finish: dict[int, str] = {}
    for chunk in raw.parse():
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return dict(texts), finish, raw.headers


# -- 1. streams are retried and fall back before their first byte --------------------------------------------

def test_openai_stream_is_retried_before_the_first_byte(wire):
    wire.sim.faults.script("gpt-4o-mini", 503, 500)  # two failures, then a normal answer
    texts, finish, headers = _openai_stream(wire.openai(), model="gpt-4o-mini", messages=MSG, max_tokens=30)
    plain = wire.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=30)
    assert texts == {0: plain.choices[0].message.content} and finish[0] == plain.choices[0].finish_reason
    assert wire.models()["gpt-4o-mini"]["errors"] == 2
    row = wire.row(headers["x-scrimp-request-id"])
    assert row["status"] == "ok" and row["decisions"]["retries"] == 2


def test_anthropic_stream_is_retried_before_the_first_byte(wire):
    wire.sim.faults.script("claude-haiku-4-5", 529)
    with wire.anthropic().messages.stream(model="claude-haiku-4-5", max_tokens=30, messages=MSG) as s:
        text = "".join(s.text_stream)
        request_id = s.response.headers["x-scrimp-request-id"]
    plain = wire.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=30, messages=MSG)
    assert text == plain.content[0].text
    assert wire.models()["claude-haiku-4-5"]["errors"] == 1
    assert wire.row(request_id)["decisions"]["retries"] == 1


def test_failing_stream_falls_back_to_the_next_model(wire):
    wire.sim.faults.script("claude-sonnet-4-6", 529, 529, 529)  # the first fallback fails too
    texts, _finish, headers = _openai_stream(wire.openai(), model="gpt-4o", messages=MSG, max_tokens=20)
    assert headers["x-scrimp-model"] == "gpt-4o-mini" and texts[0]
    counters = wire.models()
    assert counters["gpt-4o"]["errors"] == 3 and counters["claude-sonnet-4-6"]["errors"] == 3  # 1 try + 2 retries
    assert wire.row(headers["x-scrimp-request-id"])["decisions"]["fallback"] == "gpt-4o-mini"


def test_stream_that_keeps_failing_is_an_error_status_not_a_broken_stream(wire):
    wire.sim.faults.script("gpt-4o-mini", 429, 429, 429)
    with pytest.raises(openai.RateLimitError) as exc:
        wire.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    assert exc.value.status_code == 429 and "Rate limit" in exc.value.message
    assert wire.models()["gpt-4o-mini"]["errors"] == 3


def test_stream_broken_after_its_first_byte_is_not_retried(wire):
    wire.sim.faults.script("gpt-4o-mini", "drop")
    got = ""
    with pytest.raises(openai.APIError) as exc:
        for chunk in wire.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert got and "stream broke" in exc.value.message
    assert wire.models()["gpt-4o-mini"]["requests"] == 1  # the client had text: no second call


# -- 2. n > 1 streamed ----------------------------------------------------------------------------------------

def test_n_choices_are_all_streamed_billed_and_cached(gw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "n": 3, "temperature": 0, "max_tokens": 25,
                              "messages": [{"role": "user", "content": "three ideas for a name"}]}
    plain = client.chat.completions.create(**kwargs, extra_headers={"x-scrimp-cache-control": "no-cache, no-store"})
    expected = {c.index: c.message.content for c in plain.choices}
    assert len(set(expected.values())) == 3
    texts, finish, headers = _openai_stream(client, **kwargs)
    assert headers["x-scrimp-cache"] == "miss" and texts == expected
    assert finish == {c.index: c.finish_reason for c in plain.choices}
    streamed = gw.rows()[-1]
    assert streamed["request_id"] == headers["x-scrimp-request-id"]
    assert streamed["output_tokens"] == plain.usage.completion_tokens  # billed for all three, all three sent
    # The exact cache stored every choice: a non-streamed and a streamed hit both give all three.
    hit = client.chat.completions.with_raw_response.create(**kwargs)
    assert hit.headers["x-scrimp-cache"] == "exact"
    assert {c.index: c.message.content for c in hit.parse().choices} == expected
    texts_hit, finish_hit, headers_hit = _openai_stream(client, **kwargs)
    assert headers_hit["x-scrimp-cache"] == "exact" and texts_hit == expected and finish_hit == finish


def test_n_above_one_for_an_anthropic_model_is_refused_clearly(wire):
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as exc:
            wire.openai().chat.completions.create(model="claude-haiku-4-5", messages=MSG, n=2, stream=stream)
        assert exc.value.body["param"] == "n" and "Anthropic" in exc.value.message
    # Nor is an Anthropic model a fallback for n > 1: gpt-4o (always failing) skips claude-sonnet-4-6.
    r = wire.openai().chat.completions.create(model="gpt-4o", messages=MSG, n=2, max_tokens=10)
    assert len(r.choices) == 2 and r.model == "gpt-4o-mini"
    counters = wire.models()
    assert "claude-haiku-4-5" not in counters and "claude-sonnet-4-6" not in counters


# -- 3. stream timeouts ----------------------------------------------------------------------------------------

def test_a_long_healthy_stream_outlives_timeout_s(wire):
    assert count_tokens(LONG_ANSWER) >= 2000
    started = time.monotonic()
    texts, finish, _ = _openai_stream(wire.openai(), model="gpt-4.1", messages=[
        {"role": "user", "content": LONG_PROMPT}])
    assert time.monotonic() - started > TIMEOUT_S
    assert texts == {0: LONG_ANSWER} and finish == {0: "stop"}
    # Not streamed, the same answer is over the total deadline.
    with pytest.raises(openai.APIStatusError) as exc:
        wire.openai().chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": LONG_PROMPT}])
    assert exc.value.status_code == 504


def test_a_stream_with_no_first_byte_is_retried_then_refused(wire):
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as exc:
        wire.openai().chat.completions.create(model="gpt-4.1-mini", messages=MSG, stream=True)
    assert exc.value.status_code == 504 and "no first byte" in exc.value.message
    assert wire.models()["gpt-4.1-mini"]["requests"] == 3
    assert time.monotonic() - started < 3 * 1.5  # each attempt given up after the first-byte timeout


def test_a_stream_that_goes_silent_is_cut_after_the_idle_timeout(wire):
    wire.sim.faults.script("gpt-4o-mini", "stall")  # silent for 3 s halfway
    raw = wire.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    started, got = time.monotonic(), ""
    with pytest.raises(openai.APIError) as exc:
        for chunk in raw.parse():
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert got and "no data for" in exc.value.message
    assert time.monotonic() - started < 2.5
    assert wire.row(raw.headers["x-scrimp-request-id"])["status"] == "error"


# -- 4. embeddings and token counts ----------------------------------------------------------------------------

def test_embeddings_are_retried_and_carry_a_request_id(wire):
    wire.sim.faults.script("text-embedding-3-small", 500, 503)
    raw = wire.openai().embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    assert raw.headers["x-scrimp-request-id"].startswith("req_")
    assert len(raw.parse().data[0].embedding) == 1536
    assert wire.endpoint_hits("embeddings") == 3


def test_embeddings_errors_are_in_openai_shape(wire):
    wire.sim.faults.script("text-embedding-3-small", 500, 500, 500)
    with pytest.raises(openai.InternalServerError) as exc:
        wire.openai().embeddings.create(model="text-embedding-3-small", input="hello")
    assert exc.value.body["type"] == "server_error" and exc.value.response.headers["x-scrimp-request-id"]
    assert wire.endpoint_hits("embeddings") == 3
    with pytest.raises(openai.BadRequestError) as bad:
        wire.openai().embeddings.create(model=5, input="hello")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "model" and "expected a string" in bad.value.message
    assert bad.value.response.headers["x-scrimp-request-id"]


def test_count_tokens_is_retried_and_errors_are_in_anthropic_shape(wire):
    wire.sim.faults.script("claude-haiku-4-5", 529)
    raw = wire.anthropic().messages.with_raw_response.count_tokens(model="claude-haiku-4-5", messages=MSG)
    assert raw.headers["x-scrimp-request-id"].startswith("req_") and raw.parse().input_tokens > 0
    assert wire.endpoint_hits("messages.count_tokens") == 2
    with pytest.raises(anthropic.BadRequestError) as bad:
        wire.anthropic().messages.count_tokens(model=5, messages=MSG)  # type: ignore[arg-type]
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "model: Input should be a valid string"}}
    assert bad.value.response.headers["x-scrimp-request-id"]


# -- 5. errors in the caller's shape, and the models endpoint ---------------------------------------------------

def test_unknown_paths_answer_in_the_callers_shape(wire):
    with pytest.raises(openai.NotFoundError) as oa:
        wire.openai().post("/nope", cast_to=httpx.Response, body={})
    assert oa.value.body == {"message": "Invalid URL (POST /v1/nope)", "type": "invalid_request_error",
                             "param": None, "code": None}
    with pytest.raises(anthropic.NotFoundError) as an:
        wire.anthropic().post("/v1/nope", cast_to=httpx.Response, body={})  # anthropic-version header: its shape
    assert an.value.body["type"] == "error" and an.value.body["error"]["type"] == "not_found_error"
    r = httpx.post(wire.url + "/v1/messages/nope", json={})  # no header: the path says Anthropic
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method,path,shape", [
    ("GET", "/v1/chat/completions", "openai"), ("GET", "/v1/messages", "anthropic"),
    ("DELETE", "/v1/embeddings", "openai"), ("POST", "/v1/models", "openai")])
def test_wrong_method_is_405_in_shape(wire, method, path, shape):
    r = httpx.request(method, wire.url + path)
    assert r.status_code == 405 and r.headers["allow"]
    if shape == "openai":
        assert r.json()["error"]["type"] == "invalid_request_error" and method in r.json()["error"]["message"]
    else:
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


def test_non_json_content_type_is_415_in_shape(wire):
    with pytest.raises(openai.APIStatusError) as oa:
        wire.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                              extra_headers={"content-type": "text/plain"})
    assert oa.value.status_code == 415 and oa.value.body["type"] == "invalid_request_error"
    with pytest.raises(anthropic.APIStatusError) as an:
        wire.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MSG,
                                         extra_headers={"content-type": "application/x-www-form-urlencoded"})
    assert an.value.status_code == 415 and an.value.body["error"]["type"] == "invalid_request_error"
    assert wire.models() == {}  # nothing reached a provider


def test_oversized_anthropic_body_is_413_in_anthropic_shape(wire):
    with pytest.raises(anthropic.APIStatusError) as exc:
        wire.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=5,
                                         messages=[{"role": "user", "content": "x" * 100_000}])
    assert exc.value.status_code == 413 and exc.value.body["error"]["type"] == "request_too_large"


def test_get_one_model_in_both_shapes(wire):
    m = wire.openai().models.retrieve("gpt-4o-mini")
    assert m.id == "gpt-4o-mini" and m.object == "model" and m.owned_by == "openai"
    info = wire.anthropic().models.retrieve("claude-haiku-4-5")
    assert info.id == "claude-haiku-4-5" and info.type == "model"
    with pytest.raises(openai.NotFoundError) as oa:
        wire.openai().models.retrieve("gpt-9")
    assert oa.value.body["code"] == "model_not_found" and "gpt-9" in oa.value.message
    with pytest.raises(anthropic.NotFoundError) as an:
        wire.anthropic().models.retrieve("claude-9")
    assert an.value.body == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-9"}}


# -- 6. JSON answers from Anthropic models -----------------------------------------------------------------------

JSON_ASK = [{"role": "user", "content": "List three colours."}]


def test_json_object_from_an_anthropic_model_is_json(wire):
    r = wire.openai().chat.completions.create(model="claude-haiku-4-5", messages=JSON_ASK,
                                              response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_prose_around_json_gets_one_repair_call(wire):
    wire.sim.faults.script("claude-haiku-4-5", "bad_json")  # the first answer wraps its JSON in prose
    raw = wire.openai().chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=JSON_ASK, response_format={"type": "json_object"})
    content = raw.parse().choices[0].message.content
    assert isinstance(json.loads(content), dict) and "Here is" not in content
    assert wire.models()["claude-haiku-4-5"]["requests"] == 2
    row = wire.row(raw.headers["x-scrimp-request-id"])
    assert row["decisions"]["json_repair"].startswith("not JSON")
    assert [c["what"] for c in row["decisions"]["costs"]] == ["json: answer that was not the JSON asked for"]
    assert row["cost_usd"] > row["decisions"]["costs"][0]["usd"] > 0  # the rejected answer is billed too


def test_json_that_stays_invalid_is_an_error_not_prose(wire):
    wire.sim.faults.script("claude-haiku-4-5", "bad_json", "bad_json")
    with pytest.raises(openai.APIStatusError) as exc:
        wire.openai().chat.completions.create(model="claude-haiku-4-5", messages=JSON_ASK,
                                              response_format={"type": "json_object"})
    assert exc.value.status_code == 502 and exc.value.body["code"] == "invalid_json_output"
    assert "valid JSON" in exc.value.message
    assert wire.models()["claude-haiku-4-5"]["requests"] == 2


def test_streamed_json_from_an_anthropic_model_is_checked_before_it_is_sent(wire):
    wire.sim.faults.script("claude-haiku-4-5", "bad_json")
    texts, finish, _ = _openai_stream(wire.openai(), model="claude-haiku-4-5", messages=JSON_ASK,
                                      response_format={"type": "json_object"})
    assert isinstance(json.loads(texts[0]), dict) and finish == {0: "stop"}
    schema = {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
              "required": ["colours"]}
    texts, _, _ = _openai_stream(wire.openai(), model="claude-haiku-4-5", messages=JSON_ASK, response_format={
        "type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert isinstance(json.loads(texts[0])["colours"], list)


# -- 7. parameters each API refuses ---------------------------------------------------------------------------------

def test_n_above_128_is_refused(wire):
    with pytest.raises(openai.BadRequestError) as exc:
        wire.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, n=129)
    assert exc.value.body["message"] == ("Invalid 'n': integer above maximum value. Expected a value <= 128, "
                                         "but got 129 instead.")
    assert exc.value.body["param"] == "n" and exc.value.body["code"] == "integer_above_max_value"
    assert wire.models() == {}


@pytest.mark.parametrize("field,value", [("n", 2), ("response_format", {"type": "json_object"}),
                                         ("frequency_penalty", 0.5), ("presence_penalty", 0.5), ("logprobs", True),
                                         ("seed", 7)])
def test_openai_only_fields_are_refused_in_anthropic_format(wire, field, value):
    with pytest.raises(anthropic.BadRequestError) as exc:
        wire.anthropic().messages.create(model="gpt-4o-mini", max_tokens=5, messages=MSG, extra_body={field: value})
    assert exc.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": f"{field}: Extra inputs are not permitted"}}
    assert wire.models() == {}


def test_error_bodies_are_json_even_for_unexpected_failures(wire, monkeypatch):
    from scrimp.gateway import app as app_module

    def broken(body: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app_module.anthropic_fmt, "parse_request", broken)
    r = httpx.post(wire.url + "/v1/messages", content=orjson.dumps({"model": "x"}),
                   headers={"content-type": "application/json"})
    assert r.status_code == 500 and r.json()["type"] == "error" and "RuntimeError" in r.json()["error"]["message"]
