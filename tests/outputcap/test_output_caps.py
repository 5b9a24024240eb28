"""Output caps through the gateway with the official SDKs against the simulator: a cap learned from a feature's
complete answers, an answer cut at that cap continued into the whole answer (OpenAI and Anthropic clients and
upstreams, streamed and not), client caps never continued, the learned state surviving a restart and shared by
replicas (SQLite file, PostgreSQL schema), and the rates in `scrimp usage --output`."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Any

import anthropic
import openai
import pytest
from click.testing import CliRunner

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.outputcap.stage import OutputCapStage
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.usage_cli import usage

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6  # gpt-4o-mini, $ per token
HAIKU_IN, HAIKU_OUT = 1e-6, 5e-6  # claude-haiku-4-5
LEARN = [f"Explain topic number {i} in a few words" for i in range(6)]
# quantile 0.5 with no headroom: the cap is the median of six answers, so about half of all answers are cut at it
POLICY = {"quantile": 0.5, "headroom": 1.0, "min_samples": 6, "window": 50, "floor": 1}


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as (url, app):
        yield url, app


@contextlib.contextmanager
def gateway(sim_url: str, ledger: dict[str, Any], **policy: Any):
    stages = [{"name": "ledger", **ledger},
              {"name": "output_cap", "refresh_s": 0, "default": {**POLICY, **policy}}]
    app = create_app(simulated(sim_url, stages=stages))
    with serve_app(app) as url:
        yield url, app


def stage_of(app: Any) -> OutputCapStage:
    return next(s for s in app.state.gateway.stages if isinstance(s, OutputCapStage))


def rows(app: Any) -> list[dict[str, Any]]:
    store = app.state.gateway.ledger
    store.flush()
    return [{"cost": c, "saved": s, "decisions": json.loads(d), "out": o, "inp": i} for c, s, d, o, i in store.query(
        "SELECT cost_usd, saved_usd, decisions, output_tokens, input_tokens FROM calls ORDER BY ts")]


def oa(url: str, feature: str = "chat") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0,
                         default_headers={"x-scrimp-feature": feature})


def learn(client: openai.OpenAI, model: str = "gpt-4o-mini") -> list[int]:
    return [client.chat.completions.create(model=model, messages=[{"role": "user", "content": p}]).usage
            .completion_tokens for p in LEARN]


def long_prompt(direct: openai.OpenAI, cap: int, model: str = "gpt-4o-mini") -> tuple[str, Any]:
    """A prompt whose whole answer (asked of the simulator directly, no cap) is longer than `cap`."""
    for i in range(200):
        prompt = f"Write about subject {i} at length"
        whole = direct.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        if whole.usage.completion_tokens > cap + 5:
            return prompt, whole
    raise AssertionError("no long answer found")


def test_cap_learned_then_cut_answer_continued_openai(sim, tmp_path):
    sim_url, sim_app = sim
    direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}) as (url, app):
        client = oa(url)
        lengths = learn(client)
        stage = stage_of(app)
        cap = sorted(lengths)[2]  # nearest-rank median of six
        assert stage.caps["chat"] == cap
        prompt, whole = long_prompt(direct, cap)
        first_in = whole.usage.prompt_tokens
        before = sim_app.state.sim.counters.snapshot()["totals"]["requests"]
        got = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        assert sim_app.state.sim.counters.snapshot()["totals"]["requests"] - before == 2  # the cut call + its continuation
        assert got.choices[0].message.content == whole.choices[0].message.content
        assert got.choices[0].finish_reason == "stop"
        assert got.usage.completion_tokens == whole.usage.completion_tokens  # cap + the rest
        extra_in = got.usage.prompt_tokens - first_in  # the continuation sent the prompt and the partial answer again
        assert extra_in > first_in
        row = rows(app)[-1]
        assert row["decisions"]["output_cap"] == {"cap": cap, "client_cap": None, "truncated": True, "continued": True}
        assert row["cost"] == pytest.approx(got.usage.prompt_tokens * MINI_IN + got.usage.completion_tokens * MINI_OUT)
        assert row["saved"] == pytest.approx(-extra_in * MINI_IN)  # vs one uncapped call: the input paid again
        # an answer that finishes under the cap is one call, capped, not truncated, saving nothing
        short = next(p for p in (f"Say something short {i}" for i in range(100))
                     if direct.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": p}])
                     .usage.completion_tokens < cap)
        before = sim_app.state.sim.counters.snapshot()["totals"]["requests"]
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": short}])
        assert sim_app.state.sim.counters.snapshot()["totals"]["requests"] - before == 1
        row = rows(app)[-1]
        assert row["decisions"]["output_cap"]["truncated"] is False and row["saved"] == 0


def test_continued_stream_openai_and_anthropic_upstream(sim, tmp_path):
    sim_url, _ = sim
    direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}) as (url, app):
        client = oa(url)
        learn(client)
        cap = stage_of(app).caps["chat"]
        prompt, whole = long_prompt(direct, cap)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                     stream_options={"include_usage": True},
                                                     messages=[{"role": "user", "content": prompt}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert text == whole.choices[0].message.content
        assert finishes == ["stop"]  # one answer, not a cut one and another
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        assert rows(app)[-1]["decisions"]["output_cap"]["continued"] is True
        # an OpenAI client whose request an Anthropic model serves: the continuation is an Anthropic prefill
        claude_direct = anthropic.Anthropic(base_url=sim_url, api_key="any")
        for i in range(200):
            p = f"Describe project {i} thoroughly"
            want = claude_direct.messages.create(model="claude-haiku-4-5", max_tokens=4096,
                                                 messages=[{"role": "user", "content": p}])
            if want.usage.output_tokens > cap + 5:
                break
        got = client.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": p}])
        assert got.choices[0].message.content == want.content[0].text
        assert got.choices[0].finish_reason == "stop"
        assert got.usage.completion_tokens == want.usage.output_tokens
        assert rows(app)[-1]["decisions"]["output_cap"]["continued"] is True


def test_anthropic_client_caps_lowered_and_continued_stream_and_not(sim, tmp_path):
    sim_url, sim_app = sim
    direct = anthropic.Anthropic(base_url=sim_url, api_key="any")
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}, lower_client_caps=True) as (url, app):
        claude = anthropic.Anthropic(base_url=url, api_key="any", max_retries=0,
                                     default_headers={"x-scrimp-feature": "chat"})
        for p in LEARN:
            claude.messages.create(model="claude-haiku-4-5", max_tokens=4000, messages=[{"role": "user", "content": p}])
        cap = stage_of(app).caps["chat"]
        assert cap is not None
        for i in range(200):
            prompt = f"Tell the story of item {i}"
            whole = direct.messages.create(model="claude-haiku-4-5", max_tokens=4000,
                                           messages=[{"role": "user", "content": prompt}])
            if whole.usage.output_tokens > cap + 5:
                break
        msgs = [{"role": "user", "content": prompt}]
        before = sim_app.state.sim.counters.snapshot()["totals"]["requests"]
        got = claude.messages.create(model="claude-haiku-4-5", max_tokens=4000, messages=msgs)
        assert sim_app.state.sim.counters.snapshot()["totals"]["requests"] - before == 2
        assert got.content[0].text == whole.content[0].text and got.stop_reason == "end_turn"
        assert got.usage.output_tokens == whole.usage.output_tokens
        extra_in = got.usage.input_tokens - whole.usage.input_tokens
        row = rows(app)[-1]
        assert row["decisions"]["output_cap"] == {"cap": cap, "client_cap": 4000, "truncated": True, "continued": True}
        assert row["cost"] == pytest.approx(got.usage.input_tokens * HAIKU_IN + got.usage.output_tokens * HAIKU_OUT)
        assert row["saved"] == pytest.approx(-extra_in * HAIKU_IN)
        with claude.messages.stream(model="claude-haiku-4-5", max_tokens=4000, messages=msgs) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == whole.content[0].text and final.content[0].text == whole.content[0].text
        assert final.stop_reason == "end_turn" and final.usage.output_tokens == whole.usage.output_tokens
        assert len(final.content) == 1


def test_client_caps_never_continued(sim, tmp_path):
    sim_url, sim_app = sim
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}, lower_client_caps=True) as (url, app):
        client = oa(url)
        learn(client)
        cap = stage_of(app).caps["chat"]
        small = max(1, cap // 4)  # the client's own cap, below scrimp's: left alone, and its cut answer stays cut
        before = sim_app.state.sim.counters.snapshot()["totals"]["requests"]
        got = client.chat.completions.create(model="gpt-4o-mini", max_tokens=small,
                                             messages=[{"role": "user", "content": "Write about subject 7 at length"}])
        assert got.choices[0].finish_reason == "length" and got.usage.completion_tokens <= small
        claude = anthropic.Anthropic(base_url=url, api_key="any", max_retries=0,
                                     default_headers={"x-scrimp-feature": "chat"})
        msg = claude.messages.create(model="claude-haiku-4-5", max_tokens=small,
                                     messages=[{"role": "user", "content": "Write about subject 7 at length"}])
        assert msg.stop_reason == "max_tokens"
        assert sim_app.state.sim.counters.snapshot()["totals"]["requests"] - before == 2  # no continuation call
        assert all("output_cap" not in r["decisions"] for r in rows(app)[-2:])
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}) as (url, app):  # lower_client_caps off
        client = oa(url)
        assert stage_of(app).caps["chat"] == cap  # learned before the restart, from the same ledger database
        before = sim_app.state.sim.counters.snapshot()["totals"]["requests"]
        got = client.chat.completions.create(model="gpt-4o-mini", max_tokens=cap + 1000,
                                             messages=[{"role": "user", "content": "Write about subject 7 at length"}])
        assert sim_app.state.sim.counters.snapshot()["totals"]["requests"] - before == 1
        assert "output_cap" not in rows(app)[-1]["decisions"]


def test_learned_caps_shared_by_replicas_over_postgresql(sim, tmp_path):
    sim_url, _ = sim
    schema = f"scrimp_test_cap_{uuid.uuid4().hex[:8]}"
    ledger = {"dsn": PG_DSN, "schema": schema}
    try:
        with gateway(sim_url, ledger) as (url_a, _app_a), gateway(sim_url, ledger) as (url_b, app_b):
            assert stage_of(app_b).caps.get("chat") is None
            lengths = learn(oa(url_a))
            oa(url_b).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello b"}])
            # B read A's six answers before its first call, capped it at what A learned, then added its own
            assert rows(app_b)[-1]["decisions"]["output_cap"]["cap"] == sorted(lengths)[2]
            assert stage_of(app_b).samples["chat"] == 7
    finally:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_usage_shows_truncation_and_continuation_rates(sim, tmp_path):
    sim_url, _ = sim
    direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
    path = str(tmp_path / "ledger.db")
    with gateway(sim_url, {"path": path}) as (url, app):
        client = oa(url)
        learn(client)
        cap = stage_of(app).caps["chat"]
        prompt, _ = long_prompt(direct, cap)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=cap, messages=[{"role": "user", "content": "x"}])
        app.state.gateway.ledger.flush()
        import httpx

        metrics = httpx.get(url + "/metrics").text
        assert f'scrimp_output_cap_tokens{{feature="chat"}} {stage_of(app).caps["chat"]}' in metrics
        assert 'scrimp_output_cap_continued_total{feature="chat"} 1' in metrics
    result = CliRunner().invoke(usage, ["--db", path, "--output", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["output_cap"]["chat"]
    assert data["capped"] == 1 and data["truncated"] == 1 and data["continued"] == 1
    assert data["truncation_rate"] == 1.0 and data["continuation_rate"] == 1.0
    table = CliRunner().invoke(usage, ["--db", path, "--output"])
    assert "chat" in table.output and "100.0%" in table.output


def test_length_instruction_reaches_the_model_and_bad_policy_refused(sim, tmp_path):
    from scrimp.gateway.config import ConfigError, load
    from scrimp.tokens import MESSAGE_OVERHEAD, count_tokens

    sim_url, _ = sim
    direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
    rule = "Answer in at most 2 sentences."
    msgs = [{"role": "user", "content": "Explain caching"}]
    plain = direct.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    with gateway(sim_url, {"path": str(tmp_path / "ledger.db")}, length_instruction=rule) as (url, _app):
        got = oa(url).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    # the instruction went as a system message: its tokens and a message's framing more than the plain request
    assert got.usage.prompt_tokens == plain.usage.prompt_tokens + count_tokens(rule) + MESSAGE_OVERHEAD
    cfg = tmp_path / "scrimp.yaml"
    cfg.write_text("models:\n  - {name: gpt-4o-mini, provider: openai, base_url: 'http://127.0.0.1:1/v1'}\n"
                   "stages:\n  - output_cap:\n      default:\n        quantile: 1.5\n")
    with pytest.raises(ConfigError) as err:
        load(str(cfg))
    assert "line 6" in str(err.value) and "stages.output_cap.default.quantile" in str(err.value)
