"""Structured output through the gateway with the official SDKs against the simulator (its `bad_schema` fault
scripted): answers checked against the schema, one repair, the fallback model, the error in each API's shape,
and the counts in `scrimp usage --output`."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
from click.testing import CliRunner

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.usage_cli import usage

MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6  # gpt-4o-mini, $ per token
HAIKU_IN, HAIKU_OUT = 1e-6, 5e-6  # claude-haiku-4-5
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}}
MSGS = [{"role": "user", "content": "Name a city and its population"}]
TOOL = {"name": "record_place", "description": "Record a place", "input_schema": SCHEMA}


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as (url, app):
        yield url, app


@pytest.fixture
def gw(sim, tmp_path):
    sim_url, sim_app = sim
    sim_app.state.sim.reset()
    stages = [{"name": "ledger", "path": str(tmp_path / "ledger.db")},
              {"name": "structured", "features": {"extract": {"fallback_model": "gpt-4o"}}}]
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        yield url, app, sim_app.state.sim, str(tmp_path / "ledger.db")


def client(url: str, feature: str = "extract") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="any", default_headers={"x-scrimp-feature": feature})


def rows(app: Any) -> list[dict[str, Any]]:
    store = app.state.gateway.ledger
    store.flush()
    return [{"served": m, "cost": c, "decisions": json.loads(d), "status": s} for m, c, d, s in store.query(
        "SELECT served_model, cost_usd, decisions, status FROM calls ORDER BY ts")]


def calls(sim: Any) -> int:
    return sim.counters.snapshot()["totals"]["requests"]


def rejected_usage(sim_url: str, sim: Any, model: str = "gpt-4o-mini") -> Any:
    """The usage of the answer the simulator gives this request when its schema fault is scripted (the same
    deterministic answer the gateway's first attempt got)."""
    sim.faults.script(model, "bad_schema")
    direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
    bad = direct.chat.completions.create(model=model, messages=MSGS, response_format=FORMAT)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(bad.choices[0].message.content), SCHEMA)
    return bad.usage


def test_valid_answer_passes_once(gw):
    url, app, sim, _ = gw
    got = client(url).chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT)
    jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)
    assert calls(sim) == 1
    assert rows(app)[-1]["decisions"]["structured"] == {"kind": "json_schema", "outcome": "valid", "invalid": 0,
                                                        "problem": None}


def test_invalid_answer_repaired_and_its_cost_charged(gw, sim):
    url, app, state, _ = gw
    bad = rejected_usage(sim[0], state)
    state.reset()
    state.faults.script("gpt-4o-mini", "bad_schema")  # the first answer leaves out a required key
    got = client(url).chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT)
    jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)
    assert calls(state) == 2
    row = rows(app)[-1]
    d = row["decisions"]["structured"]
    assert d["outcome"] == "repaired" and d["invalid"] == 1 and "required property" in d["problem"]
    rejected = bad.prompt_tokens * MINI_IN + bad.completion_tokens * MINI_OUT
    answer = got.usage.prompt_tokens * MINI_IN + got.usage.completion_tokens * MINI_OUT
    assert row["cost"] == pytest.approx(rejected + answer)
    app.state.gateway.ledger.flush()
    lever = CliRunner().invoke(usage, ["--db", app.state.gateway.ledger.path, "--by", "lever", "--json"])
    [structured] = [r for r in json.loads(lever.output)["rows"] if r["lever"] == "structured"]
    assert structured["extra_cost_usd"] == pytest.approx(rejected)


def test_streamed_request_gets_the_repaired_answer(gw):
    url, app, state, _ = gw
    state.faults.script("gpt-4o-mini", "bad_schema")
    chunks = list(client(url).chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT,
                                                      stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert rows(app)[-1]["decisions"]["structured"]["outcome"] == "repaired"


def test_fallback_model_then_error_in_each_api_shape(gw):
    url, app, state, path = gw
    state.faults.script("gpt-4o-mini", "bad_schema", "bad_schema")  # the answer and its repair
    got = client(url).chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT)
    jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)
    assert got.model == "gpt-4o"
    row = rows(app)[-1]
    assert row["served"] == "gpt-4o" and row["decisions"]["structured"]["outcome"] == "fallback"
    # everything fails: a clear error, not retried by the SDK (three provider calls, not nine)
    state.reset()
    state.faults.script("gpt-4o-mini", "bad_schema", "bad_schema")
    state.faults.script("gpt-4o", "bad_schema")
    with pytest.raises(openai.APIStatusError) as err:
        client(url).chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT)
    assert err.value.status_code == 502
    assert err.value.body["code"] == "invalid_structured_output"
    assert "did not give a JSON answer that fits the schema after 3 attempt(s)" in err.value.body["message"]
    assert calls(state) == 3
    row = rows(app)[-1]
    assert row["status"] == "error" and row["cost"] > 0  # the three rejected answers were billed
    # an Anthropic client forcing a tool, with no fallback for its feature: repair, then the error
    state.faults.script("claude-haiku-4-5", "bad_schema", "bad_schema")
    claude = anthropic.Anthropic(base_url=url, api_key="any", default_headers={"x-scrimp-feature": "tools"})
    with pytest.raises(anthropic.APIStatusError) as aerr:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=500, messages=MSGS, tools=[TOOL],
                               tool_choice={"type": "tool", "name": "record_place"})
    assert aerr.value.status_code == 502
    assert aerr.value.body["type"] == "error" and aerr.value.body["error"]["type"] == "api_error"
    assert "tool call whose arguments fit its schema" in aerr.value.body["error"]["message"]
    app.state.gateway.ledger.flush()
    result = CliRunner().invoke(usage, ["--db", path, "--output", "--json"])
    counts = json.loads(result.output)["structured"]
    assert counts["extract"]["checked"] == 2 and counts["extract"]["invalid"] == 2
    assert counts["extract"]["fallback"] == 1 and counts["extract"]["failed"] == 1
    assert counts["tools"] == {**counts["tools"], "checked": 1, "invalid": 1, "failed": 1}


def test_forced_tool_calls_repaired_for_both_apis(gw):
    url, app, state, _ = gw
    state.faults.script("claude-haiku-4-5", "bad_schema")
    claude = anthropic.Anthropic(base_url=url, api_key="any", default_headers={"x-scrimp-feature": "tools"})
    msg = claude.messages.create(model="claude-haiku-4-5", max_tokens=500, messages=MSGS, tools=[TOOL],
                                 tool_choice={"type": "tool", "name": "record_place"})
    [call] = [b for b in msg.content if b.type == "tool_use"]
    jsonschema.validate(call.input, SCHEMA)
    assert rows(app)[-1]["decisions"]["structured"]["outcome"] == "repaired"
    state.faults.script("gpt-4o-mini", "bad_schema")
    fn = {"type": "function", "function": {"name": "record_place", "parameters": SCHEMA}}
    got = client(url, "tools").chat.completions.create(model="gpt-4o-mini", messages=MSGS, tools=[fn],
                                                       tool_choice="required")
    jsonschema.validate(json.loads(got.choices[0].message.tool_calls[0].function.arguments), SCHEMA)
    d = rows(app)[-1]["decisions"]["structured"]
    assert d["kind"] == "tool" and d["outcome"] == "repaired" and "arguments of record_place" in d["problem"]


def test_anthropic_model_without_json_mode_falls_back(gw):
    """An OpenAI client's schema request served by a Claude model: the upstream's own JSON check asks once more;
    when that answer is bad too, the feature's fallback model answers."""
    url, app, state, _ = gw
    state.faults.script("claude-haiku-4-5", "bad_schema", "bad_schema")
    got = client(url).chat.completions.create(model="claude-haiku-4-5", messages=MSGS, response_format=FORMAT)
    jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)
    assert calls(state) == 3 and got.model == "gpt-4o"
    d = rows(app)[-1]["decisions"]["structured"]
    assert d["outcome"] == "fallback" and d["invalid"] == 1


def test_schema_answer_cut_at_scrimps_cap_is_continued_then_checked(sim, tmp_path):
    """With both stages: a JSON answer cut at a (tiny) learned cap is continued into whole JSON, then checked."""
    sim_url, sim_app = sim
    state = sim_app.state.sim
    stages = [{"name": "ledger", "path": str(tmp_path / "ledger.db")},
              {"name": "structured"},
              {"name": "output_cap", "refresh_s": 0,
               "default": {"min_samples": 2, "window": 10, "floor": 1, "ceiling": 8}}]
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        c = client(url, "cities")
        for i in range(2):  # two complete answers: the cap is learned (at its ceiling, 8 tokens)
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i}"}])
        state.reset()
        got = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, response_format=FORMAT)
        jsonschema.validate(json.loads(got.choices[0].message.content), SCHEMA)
        assert calls(state) == 2 and got.choices[0].finish_reason == "stop"
        d = rows(app)[-1]["decisions"]
        assert d["output_cap"] == {"cap": 8, "client_cap": None, "truncated": True, "continued": True}
        assert d["structured"]["outcome"] == "valid"
