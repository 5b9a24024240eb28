"""The stage contract: a lever is one module plus its config section; savings are declared by the lever that
made them; sections are checked; requests are never shared mutably; config order does not matter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.cli import main
from scrimp.gateway.app import create_app
from scrimp.gateway.config import ConfigError, load, simulated
from scrimp.pipeline import Call, Pipeline, Reply
from scrimp.promptcache.stage import PromptCacheOptions, PromptCacheStage
from scrimp.router.stage import RouterOptions, RouterStage
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.stage import ServicesNotReady, Stage, StageContext, registry

PLUGIN_DIR = Path(__file__).parent / "plugin_example"


@pytest.fixture
def greeter_installed(tmp_path, monkeypatch):
    """Install the test-only lever as a package would: a dist-info with a `scrimp.stages` entry point."""
    site = tmp_path / "site"
    dist = site / "scrimp_greeter-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scrimp-greeter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[scrimp.stages]\ngreeter = scrimp_greeter:GreeterStage\n")
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(site))
    registry(reload=True)
    yield
    monkeypatch.undo()
    sys.modules.pop("scrimp_greeter", None)
    registry(reload=True)


def test_a_lever_from_an_entry_point_shows_its_saving_in_usage_by_lever(greeter_installed, tmp_path):
    assert "greeter" in registry()
    ledger = tmp_path / "ledger.db"
    config = tmp_path / "scrimp.yaml"
    config.write_text(f"""
models: []
stages:
  - ledger: {{path: {ledger}}}
  - greeter: {{usd_per_call: 0.0125}}
""")
    stages = load(config, models_required=False)
    with run_simulator() as (sim_url, _sim):
        cfg = simulated(sim_url)
        cfg.stages, cfg.stage_wheres = stages.stages, stages.stage_wheres
        app = create_app(cfg)
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
            for text in ["hi", "Hello", "what is 2 plus 2?"]:
                r = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
                assert r.status_code == 200
            assert r.parse().choices[0].message.content != "Hello! How can I help?"  # the third went upstream
            app.state.gateway.ledger.flush()
    out = CliRunner().invoke(main, ["usage", "--by", "lever", "--db", str(ledger), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["lever"]: r for r in json.loads(out.output)["rows"]}
    assert rows["greeter"]["calls"] == 2
    assert rows["greeter"]["saved_usd"] == pytest.approx(2 * 0.0125)
    table = CliRunner().invoke(main, ["usage", "--by", "lever", "--db", str(ledger)])
    assert "greeter" in table.output and "0.025000" in table.output
    # the calls' own rows agree: cost 0, baseline the declared saving
    by_feature = json.loads(CliRunner().invoke(main, ["usage", "--db", str(ledger), "--json"]).output)
    assert by_feature["totals"]["calls"] == 3
    assert by_feature["totals"]["saved_usd"] == pytest.approx(0.025)


def test_unknown_misspelt_and_mistyped_keys_are_refused_with_file_line_and_accepted_keys(tmp_path):
    def refused(text: str) -> str:
        path = tmp_path / "scrimp.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load(path, models_required=False)
        return str(info.value)

    msg = refused("stages:\n  - ledger: {path: x.db}\n  - exact_cache:\n      backnd: redis\n")
    assert msg.startswith(f"{tmp_path / 'scrimp.yaml'}, line 4: stages.exact_cache.backnd: unknown key")
    assert "accepted: backend, path, url" in msg and "did you mean 'backend'" in msg
    msg = refused("stages:\n  - name: exact_cache\n    ttl_s: abc\n")
    assert "line 3: stages.exact_cache.ttl_s: expected a number, got 'abc'" in msg
    msg = refused("stages:\n  - semantic_cache:\n      features:\n        support:\n          max_false_hits: 0.01\n")
    assert "line 5: stages.semantic_cache.features.support.max_false_hits: unknown key" in msg
    assert "max_false_hit" in msg
    msg = refused("stages:\n  - exact_cache: {backend: memcached}\n")
    assert "stages.exact_cache.backend: expected one of 'sqlite', 'redis', got 'memcached'" in msg
    msg = refused("stages:\n  - teleport\n")
    assert "line 2: stages[0]: unknown stage 'teleport'" in msg and "exact_cache" in msg


def test_a_route_naming_an_unknown_model_is_a_config_refused_line_not_a_traceback(tmp_path):
    path = tmp_path / "scrimp.yaml"
    path.write_text("""models:
  - {name: gpt-4o-mini, provider: openai, base_url: http://127.0.0.1:9/v1}
stages:
  - router:
      routes:
        default: {policy: fixed, model: gpt-9}
""")
    out = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert out.exit_code == 1
    assert "config refused:" in out.output and "line 6" in out.output and "unknown model 'gpt-9'" in out.output
    assert "Traceback" not in out.output and "scrimp gateway on" not in out.output


def test_services_are_read_after_every_stage_is_built():
    ctx = StageContext({}, upstream=None)  # type: ignore[arg-type]
    with pytest.raises(ServicesNotReady):
        _ = ctx.ledger
    ctx.seal()
    assert ctx.ledger is None  # no ledger stage configured: a stage sees None, not an error


def test_a_router_listed_before_the_ledger_still_keeps_its_shadow_rows(tmp_path):
    stages = [{"name": "router", "routes": {"default": {
                  "policy": "fixed", "model": "gpt-4o-mini", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
                  "shadow": {"share": 1.0, "scorer": "exact", "max_usd_per_day": 5}}}},
              {"name": "ledger", "path": str(tmp_path / "l.db")}]
    with run_simulator() as (sim_url, _sim):
        app = create_app(simulated(sim_url, stages=stages))
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "What is 3+4?"}])
            router = next(s for s in app.state.gateway.stages if s.name == "router")
            import asyncio

            asyncio.run(_wait(router))
            store = app.state.gateway.ledger
            store.flush()
            assert len(store.query("SELECT score FROM shadow")) == 1
            (lever, usd), = store.query("SELECT lever, usd FROM savings WHERE kind = 'cost'")
            assert lever == "router" and usd > 0  # the shadow call's spend, charged to the router


async def _wait(router) -> None:
    import asyncio

    for _ in range(400):
        if all(r.shadow is None or not r.shadow.in_flight for r in router.routes.values()):
            return
        await asyncio.sleep(0.025)


class _Recorder:
    """A terminal that answers the cheap model with an empty answer (so the cascade escalates) and keeps
    every request it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ChatRequest]] = []

    async def __call__(self, call: Call) -> Reply:
        self.sent.append((call.target_model, call.request))
        text = "" if call.target_model == "claude-haiku-4-5" else "a full answer"
        return Reply(response=ChatResponse(id="x", model=call.target_model, content=[{"type": "text", "text": text}],
                                           usage=Usage(input=2000, output=5)),
                     served_model=call.target_model, served_provider="anthropic")


def _router_options(routes: dict) -> RouterOptions:
    from scrimp.options import Where, parse_options

    return parse_options(RouterOptions, {"routes": routes}, Where())


def _markers(req: ChatRequest) -> int:
    blocks = req.system + req.tools + [b for m in req.messages for b in m["content"]]
    return sum("cache_control" in b for b in blocks)


async def test_a_cascade_attempt_never_leaks_its_prompt_cache_breakpoints_into_the_escalated_request():
    from scrimp.models import ModelSpec

    models = {n: ModelSpec(n, "anthropic", "http://x") for n in ("claude-haiku-4-5", "claude-sonnet-4-6")}
    terminal = _Recorder()
    ctx = StageContext(models, terminal)
    router = RouterStage.build(_router_options({"default": {
        "policy": "cascade", "cheap": "claude-haiku-4-5", "strong": "claude-sonnet-4-6", "checks": ["nonempty"]}}),
        ctx)
    planner = PromptCacheStage.build(PromptCacheOptions(), ctx)
    ctx.seal()
    system = [{"type": "text", "text": "You are a careful assistant. " * 1500}]
    request = ChatRequest(model="claude-sonnet-4-6", system=system,
                          messages=[{"role": "user", "content": [{"type": "text", "text": "Summarise it."}]}])
    call = Call(request)
    reply = await Pipeline([router, planner], terminal)(call)
    assert reply.response.text() == "a full answer"
    (cheap_model, cheap_req), (strong_model, strong_req) = terminal.sent
    assert (cheap_model, strong_model) == ("claude-haiku-4-5", "claude-sonnet-4-6")
    assert _markers(request) == 0  # the client's request object is untouched
    assert _markers(cheap_req) >= 1 and _markers(strong_req) >= 1
    assert call.decisions["prompt_cache"] == "planned"  # the strong attempt saw no breakpoints of the cheap one
    assert [c.lever for c in call.costs] == ["router"]  # the rejected attempt is charged to the router


def test_the_base_stage_has_every_optional_hook():
    stage = Stage()
    assert stage.http_routes() == [] and stage.metrics() == []


def test_a_feature_false_hit_target_the_model_cannot_hold_is_refused_at_start(tmp_path):
    from scrimp.gateway.config import parse

    cfg = parse({"models": [], "stages": [{"name": "semantic_cache", "path": str(tmp_path / "s.db"),
                                           "features": {"support": {"max_false_hit": 0.000001}}}]})
    with pytest.raises(ConfigError, match=r"stages.semantic_cache: max_false_hit: no calibration for a false-hit "
                                          r"rate of 1e-06"):
        create_app(cfg)


def test_prompt_cache_profiles_are_overridden_from_the_config(tmp_path):
    from scrimp.gateway.config import parse

    def stage(profiles):
        cfg = parse({"models": [{"name": "claude-x", "provider": "anthropic", "base_url": "http://x"}],
                     "stages": [{"name": "prompt_cache", "profiles": profiles}]})
        return create_app(cfg).state.gateway.stages[0]

    planner = stage({"anthropic": {"models": [{"match": "claude-x", "min_tokens": 2048}]}})
    assert planner.profiles.for_model("anthropic", "claude-x").min_tokens == 2048
    assert planner.profiles.for_model("anthropic", "claude-sonnet-4-6").min_tokens == 1024  # shipped ones stay
    with pytest.raises(ConfigError, match=r"profiles.azure: expected one of 'anthropic', 'openai'"):
        stage({"azure": {}})
    with pytest.raises(ConfigError, match=r"profiles.anthropic.models\[0\]: each model profile needs a 'match'"):
        stage({"anthropic": {"models": [{"min_tokens": 1}]}})


# -- savings arithmetic: each lever undoes its own effect, innermost first (prices by hand, per M tokens:
# claude-sonnet-4-6 $3 in / $15 out / $0.30 cache read; claude-haiku-4-5 $1 / $5 / $0.10; gpt-4o $2.50 / $10;
# gpt-4o-mini $0.15 / $0.60)

class _Answer:
    """A terminal answering with fixed usage, as `served` (a fallback may answer instead of the routed model)."""

    def __init__(self, usage: Usage, served: str | None = None, provider: str = "anthropic") -> None:
        self.usage, self.served, self.provider = usage, served, provider

    async def __call__(self, call: Call) -> Reply:
        served = self.served or call.target_model
        return Reply(response=ChatResponse(id="x", model=served, content=[{"type": "text", "text": "ok"}],
                                           usage=self.usage), served_model=served, served_provider=self.provider)


def _ledger_pipeline(tmp_path, routes, terminal, models, planner=False):
    from scrimp.ledger.stage import LedgerOptions, LedgerStage
    from scrimp.models import ModelSpec

    ctx = StageContext({n: ModelSpec(n, p, "http://x") for n, p in models.items()}, terminal)
    stages = [LedgerStage.build(LedgerOptions(path=str(tmp_path / "l.db")), ctx),
              RouterStage.build(_router_options(routes), ctx)]
    if planner:
        stages.append(PromptCacheStage.build(PromptCacheOptions(), ctx))
    ctx.seal()
    return Pipeline(stages, terminal), stages[0].store


def _request(model: str, system_words: int = 0) -> ChatRequest:
    system = [{"type": "text", "text": "Follow the house style. " * system_words}] if system_words else []
    return ChatRequest(model=model, system=system,
                       messages=[{"role": "user", "content": [{"type": "text", "text": "Summarise it."}]}])


async def test_a_routed_call_whose_prefix_was_prompt_cached_is_measured_against_the_requested_model_uncached(
        tmp_path):
    usage = Usage(input=1000, cache_read=9000, output=100)
    pipeline, store = _ledger_pipeline(
        tmp_path, {"default": {"policy": "fixed", "model": "claude-haiku-4-5"}}, _Answer(usage),
        {"claude-haiku-4-5": "anthropic", "claude-sonnet-4-6": "anthropic"}, planner=True)
    call = Call(_request("claude-sonnet-4-6", system_words=1500))
    await pipeline(call)
    store.flush()
    (cost, baseline, saved, levers), = store.query("SELECT cost_usd, baseline_usd, saved_usd, saving_stage FROM calls")
    actual = (1000 * 1 + 9000 * 0.10 + 100 * 5) / 1e6  # haiku, as answered
    haiku_uncached = (10000 * 1 + 100 * 5) / 1e6
    sonnet_uncached = (10000 * 3 + 100 * 15) / 1e6  # what the client asked for, with no lever at all
    assert cost == pytest.approx(actual) and baseline == pytest.approx(sonnet_uncached)
    assert saved == pytest.approx(sonnet_uncached - actual)
    by_lever = dict(store.query("SELECT lever, usd FROM savings"))
    assert by_lever == pytest.approx({"prompt_cache": haiku_uncached - actual, "router": sonnet_uncached - haiku_uncached})
    assert levers == "router,prompt_cache"


async def test_a_fallback_answering_for_the_routed_model_saves_nothing(tmp_path):
    usage = Usage(input=2000, output=300)
    # routed to gpt-4o, which failed; the fallback gpt-4o-mini (the model asked for) answered
    pipeline, store = _ledger_pipeline(
        tmp_path, {"default": {"policy": "fixed", "model": "gpt-4o"}}, _Answer(usage, "gpt-4o-mini", "openai"),
        {"gpt-4o": "openai", "gpt-4o-mini": "openai"})
    await pipeline(Call(_request("gpt-4o-mini")))
    store.flush()
    (cost, baseline), = store.query("SELECT cost_usd, baseline_usd FROM calls")
    assert cost == pytest.approx((2000 * 0.15 + 300 * 0.60) / 1e6) and baseline == pytest.approx(cost)
    assert store.query("SELECT usd FROM savings") == [(0.0,)]


def test_route_shadow_and_drift_options_are_checked_like_every_section(tmp_path):
    def refused(route: str) -> str:
        path = tmp_path / "scrimp.yaml"
        path.write_text("models:\n  - {name: a, provider: openai, base_url: http://x/v1}\n"
                        "  - {name: b, provider: openai, base_url: http://x/v1}\nstages:\n  - router:\n"
                        f"      routes:\n        default: {route}\n")
        with pytest.raises(ConfigError) as info:
            load(path)
        return str(info.value)

    assert "stages.router.routes.default.shadow.max_in_flight: expected an integer, got '3'" in refused(
        "{policy: fixed, model: a, cheap: a, strong: b, shadow: {max_in_flight: '3'}}")
    msg = refused("{policy: cascade, cheap: a, strong: b, drift: {windw: 10}}")
    assert "line 7: stages.router.routes.default.drift.windw: unknown key (accepted: target, confidence" in msg
    assert "routes.default.checks: expected a list, got 'nonempty'" in refused(
        "{policy: cascade, cheap: a, strong: b, checks: nonempty}")
    assert "routes.default.checks: unknown check(s) ['nonsense']" in refused(
        "{policy: cascade, cheap: a, strong: b, checks: [nonsense]}")
    assert "routes.default.polcy: unknown key (accepted: policy, model" in refused("{polcy: fixed}")
    assert "routes.default.threshold: expected a number" in refused(
        "{policy: learned, cheap: a, strong: b, threshold: high}")


def test_prompt_cache_profile_settings_are_checked(tmp_path):
    from scrimp.gateway.config import parse

    with pytest.raises(ConfigError, match=r"profiles.anthropic.defaults.min_tokns: unknown key \(accepted: min_tokens"):
        parse({"models": [], "stages": [{"name": "prompt_cache", "profiles": {"anthropic": {
            "defaults": {"min_tokns": 5}}}}]}, models_required=False)


def test_the_callers_own_key_is_forwarded_but_never_recorded(tmp_path):
    with run_simulator() as (sim_url, _sim):
        cfg = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}])
        cfg.models["gpt-4o-mini"].api_key = None  # forward the client's key
        app = create_app(cfg)
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="sk-caller-secret-123", max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            store = app.state.gateway.ledger
            store.flush()
            rows = store.query("SELECT * FROM calls")
    assert len(rows) == 1 and "sk-caller-secret-123" not in repr(rows)


async def test_a_stage_failing_after_the_provider_answered_still_records_what_was_billed(tmp_path):
    from scrimp.gateway.upstream import Upstream
    from scrimp.ledger.stage import LedgerOptions, LedgerStage

    class Exploder(Stage):
        name = "exploder"

        async def handle(self, call, next):
            await next(call)
            raise RuntimeError("a stage broke after the answer")

    with run_simulator() as (sim_url, _sim):
        cfg = simulated(sim_url)
        upstream = Upstream(cfg)
        ctx = StageContext(cfg.models, upstream)
        ledger = LedgerStage.build(LedgerOptions(path=str(tmp_path / "l.db")), ctx)
        ctx.seal()
        try:
            with pytest.raises(RuntimeError):
                await Pipeline([ledger, Exploder()], upstream)(Call(_request("gpt-4o-mini")))
        finally:
            await upstream.close()
    ledger.store.flush()
    (status, served, inp, out, cost), = ledger.store.query(
        "SELECT status, served_model, input_tokens, output_tokens, cost_usd FROM calls")
    assert (status, served) == ("error", "gpt-4o-mini") and inp > 0 and out > 0
    assert cost == pytest.approx((inp * 0.15 + out * 0.60) / 1e6)
