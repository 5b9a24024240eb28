"""Each routing policy through the gateway, against the simulator's quality model, with the official SDKs."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner
from router_helpers import EASY, HARD, write_labelled

from scrimp.cli import main


def ask(gw, text, *, model="gpt-4o", feature=None, stream=False, **kw):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    headers = {"x-scrimp-feature": feature} if feature else {}
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], stream=stream, extra_headers=headers,
        max_tokens=kw.pop("max_tokens", 200), **kw)


def test_fixed_policy_moves_the_call_and_the_ledger_prices_the_saving(make_gateway):
    gw = make_gateway({"default": {"policy": "fixed", "model": "gpt-4o-mini"}})
    r = ask(gw, EASY[0])
    assert r.headers["x-scrimp-model"] == "gpt-4o-mini" and r.headers["x-scrimp-route"] == "default:gpt-4o-mini"
    assert r.parse().choices[0].message.content == "8"
    assert gw.sim_calls("gpt-4o-mini") == 1 and gw.sim_calls("gpt-4o") == 0
    (requested, served, cost, baseline, stage), = gw.rows("calls", "requested_model, served_model, cost_usd, "
                                                          "baseline_usd, saving_stage")
    assert (requested, served, stage) == ("gpt-4o", "gpt-4o-mini", "router")
    # priced at gpt-4o-mini ($0.15 / $0.60 per M tokens), measured against gpt-4o ($2.50 / $10)
    u = r.parse().usage
    assert cost == pytest.approx((u.prompt_tokens * 0.15 + u.completion_tokens * 0.60) / 1e6)
    assert baseline == pytest.approx((u.prompt_tokens * 2.50 + u.completion_tokens * 10.0) / 1e6)


def test_rules_policy_first_match_wins(make_gateway):
    gw = make_gateway({"default": {"policy": "rules", "default": "gpt-4o-mini", "rules": [
        {"if": {"tools": True}, "model": "gpt-4o"},
        {"if": {"keywords_any": ["prove", "derive"]}, "model": "gpt-4o"},
        {"if": {"json_schema": True, "max_tokens_at_most": 100}, "model": "gpt-4.1-mini"},
        {"if": {"min_prompt_tokens": 400}, "model": "gpt-4o"}]}})
    assert ask(gw, EASY[0]).headers["x-scrimp-model"] == "gpt-4o-mini"  # no rule: the route's default
    assert ask(gw, HARD[0]).headers["x-scrimp-model"] == "gpt-4o"  # keyword
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert ask(gw, EASY[1], tools=tools).headers["x-scrimp-model"] == "gpt-4o"
    assert ask(gw, EASY[2], max_tokens=50,
               response_format={"type": "json_object"}).headers["x-scrimp-model"] == "gpt-4.1-mini"
    assert ask(gw, EASY[2], max_tokens=500,
               response_format={"type": "json_object"}).headers["x-scrimp-model"] == "gpt-4o-mini"
    assert ask(gw, "word " * 500).headers["x-scrimp-model"] == "gpt-4o"  # long prompt


def test_rules_match_tags_sent_as_headers(make_gateway):
    gw = make_gateway({"default": {"policy": "rules", "default": "gpt-4o-mini", "rules": [
        {"if": {"tags": {"tier": "enterprise"}}, "model": "gpt-4o"}]}})
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)

    def model(headers):
        return c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": EASY[0]}], extra_headers=headers,
        ).headers["x-scrimp-model"]

    assert model({"x-scrimp-tag-tier": "enterprise"}) == "gpt-4o"
    assert model({"x-scrimp-tag-tier": "free"}) == "gpt-4o-mini"
    assert model({}) == "gpt-4o-mini"


def trained_router(tmp_path) -> str:
    data = write_labelled(tmp_path / "labelled.jsonl")
    router = str(tmp_path / "router.json")
    runner = CliRunner()
    out = runner.invoke(main, ["router", "train", "--data", data, "--cheap", "gpt-4o-mini", "--strong", "gpt-4o",
                               "--out", router])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["router", "calibrate", "--router", router, "--data", data, "--target-quality", "0.95"])
    assert out.exit_code == 0 and "expected strong-model share" in out.output, out.output
    return router


def test_learned_policy_sends_hard_prompts_to_the_strong_model(make_gateway, tmp_path):
    router = trained_router(tmp_path)
    gw = make_gateway({"qa": {"policy": "learned", "router": router, "cheap": "gpt-4o-mini", "strong": "gpt-4o"}})
    unseen_easy, unseen_hard = "What is 11 plus 30?", HARD[-1]
    easy = ask(gw, unseen_easy, feature="qa")
    hard = ask(gw, unseen_hard, feature="qa")
    assert easy.headers["x-scrimp-route"] == "qa:cheap" and easy.headers["x-scrimp-model"] == "gpt-4o-mini"
    assert hard.headers["x-scrimp-route"] == "qa:strong" and hard.parse().choices[0].message.content == "B"
    # other features are not routed
    assert ask(gw, unseen_easy, feature="other").headers["x-scrimp-model"] == "gpt-4o"


def test_semantic_cache_and_router_embed_a_question_once(make_gateway, tmp_path):
    from scrimp.router.model import Router

    router = trained_router(tmp_path)
    gw = make_gateway({"default": {"policy": "learned", "router": router, "cheap": "gpt-4o-mini",
                                   "strong": "gpt-4o"}},
                      before=[{"name": "semantic_cache", "path": str(tmp_path / "semantic.db")}])
    semantic = next(s for s in gw.app.state.gateway.stages if s.name == "semantic_cache")
    route = gw.stage.routes["default"]
    embedder = semantic.cache.model.embedder
    assert route.router.featurizer._embedder(bulk=False) is embedder  # one model, one ONNX session
    before = embedder.texts_embedded
    r = ask(gw, "  What is 11 plus 30?  ")
    assert r.headers["x-scrimp-route"] == "default:cheap"
    deadline = time.monotonic() + 20  # the entry is written after the answer goes out
    while semantic.cache.store.count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert semantic.cache.store.count() == 1
    # looked up, routed and stored with one embedding of the question
    assert embedder.texts_embedded - before == 1
    (decisions,), = gw.rows("calls", "decisions")
    alone = Router.load(router).p_cheap_ok(["What is 11 plus 30?"])[0]
    assert json.loads(decisions)["p_cheap_ok"] == round(float(alone), 4)


def test_cascade_escalates_on_a_failed_check_and_charges_both_calls(make_gateway):
    gw = make_gateway({"default": {"policy": "cascade", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
                                   "checks": ["nonempty", "verifier"], "verifier": {"pattern": r"^B$"}}})
    # hard prompt: the cheap model answers a wrong letter, the verifier rejects it, gpt-4o answers
    r = ask(gw, HARD[0])
    assert r.headers["x-scrimp-route"] == "default:strong" and r.parse().choices[0].message.content == "B"
    assert gw.sim_calls("gpt-4o-mini") == 1 and gw.sim_calls("gpt-4o") == 1
    (cost, decisions), = gw.rows("calls", "cost_usd, decisions")
    assert json.loads(decisions)["escalation"] == "verifier"
    assert float(r.headers["x-scrimp-cost-usd"]) == cost  # both calls' cost, in one ledger row
    direct = make_gateway({"other": {"policy": "fixed", "model": "gpt-4o"}})  # no route for this call
    strong_only = float(ask(direct, HARD[0]).headers["x-scrimp-cost-usd"])
    assert cost > strong_only


def test_cascade_accepts_a_good_cheap_answer_and_streams_it(make_gateway):
    gw = make_gateway({"default": {"policy": "cascade", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
                                   "checks": ["json", "nonempty", "truncated", "refusal"]}})
    raw = ask(gw, EASY[3], stream=True)
    assert raw.headers["x-scrimp-route"] == "default:cheap"
    text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
    assert text == "14"
    # a truncated cheap answer escalates
    r = ask(gw, "Tell me a long story about the sea.", max_tokens=3)
    assert r.headers["x-scrimp-route"] == "default:strong"
    assert gw.sim_calls("gpt-4o-mini") == 2 and gw.sim_calls("gpt-4o") == 1


def test_parameters_a_routed_model_refuses_are_adapted(make_gateway):
    routes = {"default": {"policy": "fixed", "model": "o4-mini"},
              "claude": {"policy": "fixed", "model": "claude-haiku-4-5"}}
    gw = make_gateway(routes, **{"o4-mini": {"max_tokens_field": "max_completion_tokens",
                                             "rejects": ["temperature", "top_p"]},
                                 "claude-haiku-4-5": {"rejects": ["temperature+top_p"]}})
    r = ask(gw, EASY[0], temperature=0.3, top_p=0.9, max_tokens=100)
    assert r.status_code == 200 and r.headers["x-scrimp-model"] == "o4-mini"
    r = ask(gw, EASY[0], temperature=0.3, top_p=0.9, feature="claude")
    assert r.status_code == 200 and r.headers["x-scrimp-model"] == "claude-haiku-4-5"
    # the same request straight to the simulator is refused: the adaptation is what made it pass
    direct = openai.OpenAI(base_url=gw.app.state.gateway.config.models["o4-mini"].base_url, api_key="sim",
                           max_retries=0)
    try:
        direct.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}],
                                       temperature=0.3, max_tokens=100)
        raise AssertionError("the simulator should refuse temperature for o4-mini")
    except openai.BadRequestError as exc:
        assert "temperature" in str(exc) or "max_tokens" in str(exc)


def test_shadow_sampling_stays_within_its_spend_cap(make_gateway):
    gw = make_gateway({"default": {"policy": "fixed", "model": "gpt-4o-mini", "cheap": "gpt-4o-mini",
                                   "strong": "gpt-4o",
                                   "shadow": {"share": 1.0, "max_usd_per_day": 0.00001, "scorer": "exact",
                                              "max_in_flight": 1}}})
    ask(gw, EASY[0])
    gw.wait_shadow(1)
    for q in EASY[1:6]:
        ask(gw, q)
    (prompt, served, score, cost), = gw.rows("shadow", "prompt, served, score, cost_usd")
    assert (prompt, served, score) == (EASY[0], "cheap", 1.0) and cost > 0.00001  # one sample spent the cap
    assert gw.sim_calls("gpt-4o") == 1 and gw.sim_calls("gpt-4o-mini") == 6
    status = httpx.get(gw.url + "/v1/scrimp/router/status").json()["routes"]["default"]["shadow"]
    assert status["runs"] == 1 and status["skipped_for_cap"] == 5
    shadow_rows = [r for r in gw.rows("calls", "saving_stage, saved_usd") if r[0] == "router_shadow"]
    assert len(shadow_rows) == 1 and shadow_rows[0][1] < 0  # its spend shows in the ledger


def test_drift_guard_sends_the_route_back_when_cheap_quality_drops(make_gateway, sim):
    gw = make_gateway({"default": {"policy": "fixed", "model": "gpt-4o-mini", "cheap": "gpt-4o-mini",
                                   "strong": "gpt-4o",
                                   "shadow": {"share": 1.0, "max_usd_per_day": 10, "scorer": "exact"},
                                   "drift": {"target": 0.9, "confidence": 0.95, "min_samples": 10}}})
    for q in EASY[:12]:
        assert ask(gw, q).headers["x-scrimp-route"] == "default:cheap"
    gw.wait_shadow(12)
    assert not gw.stage.routes["default"].drift.tripped
    sim[1].state.sim.config.models["gpt-4o-mini"].capability = 0.0  # the cheap model gets worse
    n = 12
    for q in EASY[12:40]:
        if ask(gw, q).headers["x-scrimp-route"].endswith(":strong"):
            break
        n += 1
        gw.wait_shadow(n)
    assert gw.stage.routes["default"].drift.tripped
    r = ask(gw, EASY[0])
    assert r.headers["x-scrimp-route"] == "default:strong" and r.headers["x-scrimp-model"] == "gpt-4o"
    (kind, route, detail), = gw.rows("events", "kind, route, detail")
    assert kind == "drift_guard_tripped" and route == "default" and json.loads(detail)["upper"] < 0.9
    status = httpx.get(gw.url + "/v1/scrimp/router/status").json()
    assert status["routes"]["default"]["drift"]["tripped"] is True
    metrics = httpx.get(gw.url + "/metrics")  # what an alert rule would watch
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = prometheus_samples(metrics.text)
    assert m['scrimp_router_drift_tripped{route="default"}'] == 1
    assert m['scrimp_router_drift_trips_total{route="default"}'] == 1
    assert m['scrimp_router_drift_quality_upper{route="default"}'] < m['scrimp_router_drift_target{route="default"}']
    assert m['scrimp_router_calls_total{route="default",model="gpt-4o"}'] >= 2
    assert m['scrimp_router_shadow_runs_total{route="default"}'] >= n  # and some after the switch
    assert httpx.post(gw.url + "/v1/scrimp/router/routes/default/reset").json()["tripped"] is False
    assert prometheus_samples(httpx.get(gw.url + "/metrics").text)['scrimp_router_drift_tripped{route="default"}'] == 0


def prometheus_samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} from the Prometheus text format, checking each family is declared first."""
    declared, out = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            assert key.split("{")[0] in declared, f"{key} has no TYPE line"
            out[key] = float(value)
    return out


def test_anthropic_clients_are_routed_too(make_gateway):
    gw = make_gateway({"default": {"policy": "fixed", "model": "claude-haiku-4-5"}})
    a = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    r = a.messages.with_raw_response.create(model="claude-opus-4-7", max_tokens=100,
                                            messages=[{"role": "user", "content": EASY[0]}])
    assert r.headers["x-scrimp-model"] == "claude-haiku-4-5" and r.parse().content[0].text == "8"


def test_bad_route_config_is_refused_clearly(sim):
    import pytest
    from router_helpers import gateway_config

    from scrimp.gateway.app import create_app
    from scrimp.gateway.config import ConfigError

    for routes, message in [({"default": {"policy": "magic"}}, "policy"),
                            ({"default": {"policy": "fixed", "model": "gpt-9"}}, "unknown model"),
                            ({"default": {"policy": "learned", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
                                          "router": "/nonexistent.json"}}, "cannot load"),
                            ({"default": {"policy": "rules", "rules": [{"if": {"colour": "red"},
                                                                        "model": "gpt-4o"}]}}, "unknown condition")]:
        with pytest.raises(ConfigError, match=message):
            create_app(gateway_config(sim[0], [{"name": "router", "routes": routes}]))


def test_an_accepted_cascade_streams_every_choice_and_a_hang_up_is_still_billed(make_gateway):
    gw = make_gateway({"default": {"policy": "cascade", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
                                   "checks": ["nonempty"]}})
    raw = ask(gw, EASY[3], stream=True, n=2)
    assert raw.headers["x-scrimp-route"] == "default:cheap"
    texts: dict[int, str] = {}
    for chunk in raw.parse():
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "14", 1: "14"}
    (stream_flag,), = gw.rows("calls", "stream")
    assert stream_flag == 1  # recorded as the client asked: a stream
    # the same question, and the client hangs up after the first chunk: the cheap model was paid in full
    plain = ask(gw, EASY[4]).parse().usage
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    stream = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": EASY[4]}], stream=True,
                                       max_tokens=200)
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(gw.rows("calls", "status")) < 3:
        time.sleep(0.05)
    status, cost = gw.rows("calls", "status, cost_usd")[-1]
    assert status in ("client_cancelled", "ok")
    assert cost == pytest.approx((plain.prompt_tokens * 0.15 + plain.completion_tokens * 0.60) / 1e6)


def test_a_route_to_a_model_that_cannot_serve_the_request_leaves_it_on_the_requested_model(make_gateway):
    gw = make_gateway({"default": {"policy": "fixed", "model": "claude-haiku-4-5"}})
    r = ask(gw, EASY[0], n=2)  # Anthropic models return one choice
    assert r.status_code == 200 and r.headers["x-scrimp-model"] == "gpt-4o"
    assert len(r.parse().choices) == 2
    (decisions,), = gw.rows("calls", "decisions")
    assert "returns one choice" in json.loads(decisions)["route_skipped"]
    assert ask(gw, EASY[1]).headers["x-scrimp-model"] == "claude-haiku-4-5"  # n = 1 is routed as before
