"""The offload stage through the gateway, against the simulator (which answers each generated prompt with its
label), with the official SDKs."""

from __future__ import annotations

import json
import shutil

import anthropic
import openai
import pytest
import yaml
from click.testing import CliRunner
from conftest import ROWS, wait_until
from offload_helpers import gateway_config

from scrimp.cli import main
from scrimp.offload.labels import label_of
from scrimp.offload.model import OffloadModel
from scrimp.offload.training import embed
from scrimp.sim.config import normalise_prompt

PROMPT, ANSWER = ROWS[0]["prompt"], ROWS[0]["answer"]
MINI_IN, MINI_OUT = 0.15, 0.60  # gpt-4o-mini, $ per M tokens


def oa(gw, **kw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, **kw)


def ask(gw, prompt, *, feature="intent", stream=False, max_tokens=None):
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    return oa(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=stream,
        extra_headers={"x-scrimp-feature": feature}, **extra)


def served_model(trained_model, tmp_path) -> str:
    path = tmp_path / "intent-model"
    shutil.copytree(trained_model, path)
    return str(path)


def test_offloaded_in_both_formats_streamed_or_not_and_the_saving_is_recorded(make_gateway, trained_model,
                                                                               tmp_path, sim):
    gw = make_gateway({"intent": {"model": served_model(trained_model, tmp_path), "shadow": {"share": 0}}})
    label = label_of(ANSWER)
    r = ask(gw, PROMPT)
    assert r.headers["x-scrimp-offload"] == label and float(r.headers["x-scrimp-offload-confidence"]) > 0.5
    assert r.parse().choices[0].message.content == ANSWER  # as the LLM words it

    chunks = list(ask(gw, PROMPT, stream=True).parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER

    an = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    raw = an.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=50, messages=[
        {"role": "user", "content": PROMPT}], extra_headers={"x-scrimp-feature": "intent"})
    assert raw.headers["x-scrimp-offload"] == label and raw.parse().content[0].text == ANSWER
    with an.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": PROMPT}],
                            extra_headers={"x-scrimp-feature": "intent"}) as s:
        assert s.get_final_text() == ANSWER
    resp = oa(gw).responses.with_raw_response.create(model="gpt-4o-mini", input=PROMPT,
                                                    extra_headers={"x-scrimp-feature": "intent"})
    assert resp.headers["x-scrimp-offload"] == label and resp.parse().output_text == ANSWER
    assert gw.sim_calls() == 0  # no provider was asked

    # the saving is the call it replaced: the same question answered by gpt-4o-mini, priced by hand
    direct = openai.OpenAI(base_url=sim[0] + "/v1", api_key="k").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    assert direct.choices[0].message.content == ANSWER
    expected = (direct.usage.prompt_tokens * MINI_IN + direct.usage.completion_tokens * MINI_OUT) / 1e6
    rows = gw.rows("SELECT cost_usd, baseline_usd, saving_stage, provider FROM calls ORDER BY ts")
    assert len(rows) == 5
    cost, baseline, stage, provider = rows[0]
    assert (cost, stage, provider) == (0.0, "offload", "offload")
    assert baseline == pytest.approx(expected)
    (lever, calls, saved), = gw.rows("SELECT lever, COUNT(*), SUM(usd) FROM savings GROUP BY lever")
    assert lever == "offload" and calls == 5 and saved > 0


def test_a_call_the_model_is_unsure_of_goes_to_the_llm(make_gateway, trained_model, tmp_path):
    model_dir = served_model(trained_model, tmp_path)
    model = OffloadModel.load(model_dir)
    candidates = ["Hello there, how are you today?", "Refund the password of my parcel subscription?",
                  "What is the weather in Paris?", "Tell me a joke about cats", "I need help"]
    unsure = [p for p, d in zip(candidates, model.decide(candidates, embed(candidates))) if not d.served]
    assert unsure, "every candidate cleared the threshold"
    gw = make_gateway({"intent": {"model": model_dir, "shadow": {"share": 0}}})
    r = ask(gw, unsure[0])
    assert "x-scrimp-offload" not in r.headers
    assert gw.sim_calls() == 1 and r.headers["x-scrimp-model"] == "gpt-4o-mini"
    other = ask(gw, PROMPT, feature="another-feature")  # a feature that is not offloaded
    assert "x-scrimp-offload" not in other.headers and gw.sim_calls() == 2


def test_shadow_checks_stay_within_the_daily_cap_and_are_charged_to_the_call(make_gateway, trained_model, tmp_path):
    # one check reserves its worst case: the input plus max_tokens (10) of output at gpt-4o-mini
    gw = make_gateway({"intent": {"model": served_model(trained_model, tmp_path),
                                  "shadow": {"share": 1.0, "max_usd_per_day": 0.00002, "seed": 1}}})
    offloaded = 0
    for row in ROWS[:12]:
        r = ask(gw, row["prompt"], max_tokens=10)
        offloaded += "x-scrimp-offload" in r.headers
    stage = gw.stage()
    feature = stage.features["intent"]
    assert offloaded >= 8
    assert 1 <= feature.shadow.runs < offloaded and feature.shadow.skipped_for_cap >= 1
    assert feature.shadow.runs == gw.sim_calls()
    snap = gw.sim.counters.snapshot()["models"]["gpt-4o-mini"]
    spent = (snap["input_tokens"] * MINI_IN + snap["output_tokens"] * MINI_OUT) / 1e6
    assert spent <= 0.00002
    assert feature.shadow.spent_today == pytest.approx(spent)
    # each check's cost is on the row of the call it checked, as the offload lever's cost
    (costs,), = gw.rows("SELECT SUM(usd) FROM savings WHERE kind = 'cost' AND lever = 'offload'")
    assert costs == pytest.approx(spent)
    (row_costs,), = gw.rows("SELECT SUM(cost_usd) FROM calls")
    assert row_costs == pytest.approx(spent)
    assert feature.agreed == feature.shadow.runs and feature.disagreed == 0


def _config_file(gw, tmp_path, features) -> str:
    ledger = gw.app.state.gateway.ledger.path
    stages = [{"name": "ledger", "path": ledger}, {"name": "request_log", "features": ["*"]},
              {"name": "offload", "features": features}]
    cfg = gateway_config("http://127.0.0.1:1", stages)
    models = [{"name": m.name, "provider": m.provider, "base_url": m.base_url, "api_key": "sim"}
              for m in cfg.models.values()]
    path = tmp_path / "scrimp.yaml"
    path.write_text(yaml.safe_dump({"models": models, "stages": stages}))
    return str(path)


def test_drift_guard_switches_back_and_retraining_from_the_log_brings_the_feature_back(make_gateway,
                                                                                       trained_model, tmp_path):
    model_dir = served_model(trained_model, tmp_path)
    features = {"intent": {"model": model_dir, "reload_every_s": 0, "shadow": {"share": 1.0, "seed": 2},
                           "drift": {"min_samples": 5, "window": 20}}}
    gw = make_gateway(features)
    assert "x-scrimp-offload" in ask(gw, PROMPT).headers
    # the LLM's answers change: every intent is now worded (and labelled) differently
    new = {r["prompt"]: r["answer"].replace("Intent: ", "Category: ") for r in ROWS}
    gw.sim.config.workload = {normalise_prompt(p): {"answer": a, "difficulty": 0.0} for p, a in new.items()}
    stage = gw.stage()
    for row in ROWS[1:20]:
        ask(gw, row["prompt"])
        if stage.features["intent"].guard.tripped:
            break
    assert stage.features["intent"].guard.tripped
    assert stage.features["intent"].disagreed >= 4  # and the first check, before the change, agreed
    # from now on the LLM answers, with its new wording
    r = ask(gw, PROMPT)
    assert "x-scrimp-offload" not in r.headers and r.parse().choices[0].message.content == new[PROMPT]
    tripped = gw.rows("SELECT kind FROM events WHERE kind = 'offload_drift_guard_tripped'")
    assert tripped == [("offload_drift_guard_tripped",)]
    # the LLM-answered calls are logged; one command retrains on the newest of them
    for row in ROWS:
        ask(gw, row["prompt"])
    gw.flush_log()
    config = _config_file(gw, tmp_path, features)
    out = CliRunner().invoke(main, ["offload", "retrain", "--config", config, "--feature", "intent",
                                    "--limit", str(len(ROWS)), "--target-agreement", "0.95"])
    assert out.exit_code == 0, out.output
    assert OffloadModel.load(model_dir).rendering(label_of(new[PROMPT])) == new[PROMPT]
    r = ask(gw, PROMPT)  # the gateway picked up the retrained model, with a fresh guard
    assert r.headers.get("x-scrimp-offload") == label_of(new[PROMPT])
    assert r.parse().choices[0].message.content == new[PROMPT]
    wait_until(lambda: not stage.features["intent"].guard.tripped)
    assert not stage.features["intent"].guard.tripped


def test_candidates_and_refusal_from_the_logged_traffic(make_gateway, tmp_path):
    gw = make_gateway({})
    for i in range(40):  # prompts the simulator has no label for: it answers with prose
        ask(gw, f"Write two sentences about the history of topic number {i}", feature="essays")
    for row in ROWS:
        ask(gw, row["prompt"])
    gw.flush_log()
    config = tmp_path / "scrimp.yaml"
    config.write_text(yaml.safe_dump({"models": [{"name": "gpt-4o-mini", "provider": "openai",
                                                  "base_url": "http://127.0.0.1:1/v1"}],
                                      "stages": [{"name": "ledger", "path": gw.app.state.gateway.ledger.path}]}))
    out = CliRunner().invoke(main, ["offload", "train", "--config", str(config), "--feature", "essays",
                                    "--out", str(tmp_path / "m")])
    assert out.exit_code != 0 and "free text" in out.output and "40 distinct answers" in out.output
    assert not (tmp_path / "m").exists()
    found = CliRunner().invoke(main, ["offload", "candidates", "--config", str(config), "--min-calls", "10",
                                      "--target-agreement", "0.95", "--json"])
    assert found.exit_code == 0, found.output
    features = {f["feature"]: f for f in json.loads(found.output)["features"]}
    essays, intent = features["essays"], features["intent"]
    assert not essays["offloadable"] and "free text" in essays["reason"]
    assert intent["offloadable"] and intent["calls"] == len(ROWS) and intent["labels"] == 4
    assert intent["coverage"] > 0.5 and intent["agreement_lower"] >= 0.95
    (spend,), = gw.rows("SELECT SUM(cost_usd) FROM calls WHERE feature = 'intent'")
    assert intent["spend_usd"] == pytest.approx(spend)
    assert intent["saving_usd"] == pytest.approx(spend * intent["coverage"] * 0.95)  # less 5% shadow checks
