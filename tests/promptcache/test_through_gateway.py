"""The planner through the gateway, against the simulator's prompt-cache accounting."""

from __future__ import annotations

import itertools

import anthropic
import openai
import pytest

from scrimp.demo.workload import AGENT_SYSTEM, AGENT_TOOLS
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app


@pytest.fixture
def gateway(tmp_path, request):
    stage = {"name": "prompt_cache", **getattr(request, "param", {})}
    with run_simulator() as (sim_url, _sim):
        app = create_app(simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}, stage]))
        with serve_app(app) as url:
            yield url, app


def agent_turns(url, n, system=AGENT_SYSTEM, feature="agent"):
    c = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    history, usages = [], []
    for t in range(n):
        history.append({"role": "user", "content": f"turn {t}: check region {t}"})
        r = c.messages.create(model="claude-sonnet-4-6", max_tokens=40, system=system(t) if callable(system) else system,
                              tools=AGENT_TOOLS, messages=history, extra_headers={"x-scrimp-feature": feature})
        usages.append(r.usage)
        history.append({"role": "assistant", "content": "Region looks healthy."})
    return usages


def test_agent_loop_reads_its_prefix_from_cache_after_the_first_turn(gateway):
    url, app = gateway
    usages = agent_turns(url, 4)
    assert usages[0].cache_creation_input_tokens > 4000 and usages[0].cache_read_input_tokens == 0
    for prev, cur in itertools.pairwise(usages):
        # Everything the previous turn sent is read; only the new turn is written.
        assert cur.cache_read_input_tokens == prev.cache_read_input_tokens + prev.cache_creation_input_tokens
        assert cur.cache_creation_input_tokens < 100
    store = app.state.gateway.ledger
    store.flush()
    rows = store.query("SELECT cost_usd, baseline_usd, saving_stage FROM calls ORDER BY ts")
    assert rows[0][0] > rows[0][1]  # the first turn pays the write premium, and the ledger says so
    assert all(cost < base / 3 and stage == "prompt_cache" for cost, base, stage in rows[1:])


def test_without_the_planner_nothing_is_cached(tmp_path):
    with run_simulator() as (sim_url, _sim):
        app = create_app(simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}]))
        with serve_app(app) as url:
            assert all(u.cache_read_input_tokens == 0 for u in agent_turns(url, 3))


def stamped(turn):
    return f"Current time: 2026-11-22T10:{turn:02d}:00Z\n" + AGENT_SYSTEM


def test_timestamped_system_prompt_is_reported_and_busts_the_cache(gateway):
    url, app = gateway
    usages = agent_turns(url, 3, system=stamped)
    assert all(u.cache_read_input_tokens == 0 for u in usages)  # the timestamp defeats caching...
    store = app.state.gateway.ledger
    store.flush()
    decisions = [d for (d,) in store.query("SELECT decisions FROM calls ORDER BY ts")]
    assert '"kind":"timestamp"' in decisions[1] and '"where":"system"' in decisions[1]  # ...and is named


@pytest.mark.parametrize("gateway", [{"move_volatile": True}], indirect=True)
def test_moving_volatile_lines_out_of_the_prefix_restores_hits(gateway):
    url, _app = gateway
    usages = agent_turns(url, 3, system=stamped)
    assert usages[1].cache_read_input_tokens > 4000 and usages[2].cache_read_input_tokens > 4000


def test_openai_requests_carry_a_stable_prompt_cache_key(gateway):
    url, _app = gateway
    c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    msgs = [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": "q"}]
    first = c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5,
                                      extra_headers={"x-scrimp-feature": "agent"})
    second = c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5,
                                       extra_headers={"x-scrimp-feature": "agent"})
    other = c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5,
                                      extra_headers={"x-scrimp-feature": "other"})
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens > 1024  # same key: same cache
    assert other.usage.prompt_tokens_details.cached_tokens == 0  # another feature: another key


async def test_stage_sets_the_same_key_for_the_same_feature():
    from scrimp.canonical import ChatRequest
    from scrimp.pipeline import Attribution, Call, Pipeline, Reply
    from scrimp.promptcache.profiles import Profiles
    from scrimp.promptcache.stage import PromptCacheStage

    seen = []

    async def terminal(call):
        seen.append(call.request.prompt_cache_key)
        return Reply()

    stage = PromptCacheStage({"gpt-4o": ("openai", "gpt-4o")}, Profiles.load())
    pipe = Pipeline([stage], terminal)
    for feature in ("a", "a", "b"):
        req = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}])
        await pipe(Call(req, Attribution(tenant="t1", feature=feature)))
    assert seen[0] == seen[1] != seen[2] and seen[0].startswith("scrimp-")


def test_usage_reports_hit_ratio_savings_and_busters(gateway, tmp_path):
    import json

    from click.testing import CliRunner

    from scrimp.cli import main

    url, app = gateway
    agent_turns(url, 4)
    agent_turns(url, 2, system=stamped, feature="stamped")
    app.state.gateway.ledger.flush()
    result = CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "l.db"), "--prompt-cache", "--json"])
    assert result.exit_code == 0, result.output
    by = {r["feature"]: r for r in json.loads(result.output)["prompt_cache"]}
    agent = by["agent"]
    assert agent["hit_ratio"] > 0.7  # 3 of 4 turns read everything the turn before sent
    assert agent["read_savings_usd"] > agent["write_premium_usd"] > 0 and agent["net_saving_usd"] > 0
    assert by["stamped"]["busters"]["timestamp"]["count"] == 1 and by["stamped"]["hit_ratio"] == 0
    table = CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "l.db"), "--prompt-cache"])
    assert "cache buster in stamped: timestamp" in table.output
