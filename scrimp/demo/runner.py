"""Replays the demo workload straight to the (simulated) providers and through scrimp, and compares."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
from tqdm import tqdm

from scrimp import pricing
from scrimp.demo import conversation, intents
from scrimp.demo.workload import DemoCall, build, reference_workload
from scrimp.formats import anthropic as anthropic_fmt
from scrimp.formats import openai as openai_fmt
from scrimp.gateway.app import create_app
from scrimp.gateway.config import DEFAULT_STAGES, simulated
from scrimp.sim.config import SimConfig, default_models, parse_config
from scrimp.sim.testing import run_simulator, serve_app

# Stages the demo runs; each later lever adds itself here (and to the per-lever table).
# The default pipeline (every lever that never changes an answer: ledger, exact cache, prompt-cache planner),
# with the two levers a team switches on in its config inserted where they belong.
OPT_INS = [
    {"name": "semantic_cache"},
    # Support questions go to the cheap model unless they touch billing failures or quotas (harder);
    # a shadow sample of the cheap model's answers is checked against gpt-4o by a drift guard.
    {"name": "router", "routes": {"support": {
        "policy": "rules", "default": "gpt-4o-mini", "cheap": "gpt-4o-mini", "strong": "gpt-4o",
        "rules": [{"if": {"keywords_any": ["declined", "quota", "exceed", "VAT", "regions", "rate limit"]},
                   "model": "gpt-4o"}],
        "shadow": {"share": 0.5, "max_usd_per_day": 0.05, "scorer": "exact", "seed": 1},
        "drift": {"target": 0.9, "min_samples": 5}}}},
    # The agent loop's daily budget: past 60% of it, its calls go to the cheaper Claude model.
    {"name": "budgets", "budgets": [{
        "name": "agent-daily", "feature": "agent", "limit_usd": 0.06, "period": "day",
        "actions": [{"do": "alert", "at": 0.5}, {"do": "downgrade", "at": 0.6, "model": "claude-haiku-4-5"}]}]},
]
# The nightly summaries are deferred to the providers' Batch APIs (half price): the batch lane sits last, before
# the provider call, so every other lever has shaped a line before it is queued.
BATCH_LANE = {"name": "batch", "max_wait_s": 1.0, "poll_s": 0.2, "tick_s": 0.1,
              "features": {"nightly-summary": {"defer": "1h"}}}
_AFTER = [s["name"] for s in DEFAULT_STAGES].index("exact_cache") + 1
DEMO_STAGES = ([dict(s) for s in DEFAULT_STAGES[:_AFTER]] + OPT_INS + [dict(s) for s in DEFAULT_STAGES[_AFTER:]]
               + [BATCH_LANE])
PIPELINE_LINE = ("pipeline: " + " -> ".join(s["name"] for s in DEMO_STAGES)
                 + f" (the defaults, plus {', '.join(s['name'] for s in [*OPT_INS, BATCH_LANE])})")


@dataclass
class RunResult:
    cost: float = 0.0
    provider_calls: int = 0
    correct: int = 0
    graded: int = 0
    latencies: list[float] = field(default_factory=list)
    cost_by_workload: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    saving_by_lever: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    hits_by_lever: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def sim_config() -> SimConfig:
    cfg = parse_config({})
    cfg.workload = parse_config({}).workload
    from scrimp.sim.config import normalise_prompt

    cfg.workload = {normalise_prompt(w["prompt"]): {"answer": w["answer"], "difficulty": w["difficulty"]}
                    for w in [*reference_workload(), *intents.workload()]}
    models = default_models()
    for m in models:  # a little latency, so the table's latency column means something
        m.ttft_ms, m.per_token_ms = 15.0, 0.2
    cfg.models = {m.name: m for m in models}
    cfg.batch_delay_s = 1.0  # a provider batch ends a second after it is submitted (hours, in real life)
    return cfg


def _send(call: DemoCall, base: str, key: str) -> tuple[str, Any]:
    """One call with the official SDK; returns (answer text, canonical response)."""
    if call.provider == "anthropic":
        client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=2)
        msg = client.messages.create(**call.body, extra_headers=call.headers)
        canon = anthropic_fmt.parse_response(msg.model_dump())
    else:
        oa = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=2)
        resp = oa.chat.completions.create(**call.body, extra_headers=call.headers)
        canon = openai_fmt.parse_response(resp.model_dump())
    return canon.text(), canon


def _replay(calls: list[DemoCall], base: str, label: str, progress: bool) -> RunResult:
    result = RunResult()
    lock = threading.Lock()
    bar = tqdm(total=len(calls), desc=label, unit="call", disable=not progress, leave=False)

    def one(call: DemoCall) -> None:
        t0 = time.perf_counter()
        text, canon = _send(call, base, "demo-key")
        provider = "anthropic" if call.body["model"].startswith("claude") else "openai"
        cost = pricing.cost(call.body["model"], provider, canon.usage)
        with lock:
            if call.workload != "nightly":  # the latency of interactive calls (nobody waits for the nightly job)
                result.latencies.append(time.perf_counter() - t0)
            result.cost += cost
            result.cost_by_workload[call.workload] += cost
            if call.reference is not None:
                result.graded += 1
                result.correct += int(text.strip() == call.reference)
            bar.update()

    for call in calls:
        if call.workload != "nightly":
            one(call)
    job = [call for call in calls if call.workload == "nightly"]  # a nightly job sends its calls all at once
    with ThreadPoolExecutor(max(1, len(job))) as pool:
        list(pool.map(one, job))
    bar.close()
    return result


def run(progress: bool = True, out: Callable[[str], None] = print, workdir: str | None = None,
        log_requests: bool = False) -> dict[str, Any]:
    """`workdir`: keep the scrimp run's ledger (and caches) there instead of a temporary folder; `log_requests`:
    with the request log on (every call), so `scrimp simulate` can replay the run."""
    calls = build()
    with run_simulator(sim_config()) as (sim_url, sim_app):
        sim = sim_app.state.sim
        direct = _replay(calls, sim_url, "straight to the providers", progress)
        direct.provider_calls = sim.counters.snapshot()["totals"]["requests"]
        sim.reset()  # the scrimp run starts with cold provider caches too
        with contextlib.nullcontext(workdir) if workdir else tempfile.TemporaryDirectory() as tmp:
            stages = [dict(s, path=str(Path(tmp) / f"{s['name']}.db"))
                      if s["name"] not in ("prompt_cache", "router", "batch") else s for s in DEMO_STAGES]
            if log_requests:
                stages.insert(1, {"name": "request_log", "features": ["*"]})
            app = create_app(simulated(sim_url, stages=stages))
            with serve_app(app) as gateway_url:
                via = _replay(calls, gateway_url, "through scrimp", progress)
                store = app.state.gateway.ledger
                store.flush()
                _wait_for_shadow(app)
                store.flush()
                rows = store.query("SELECT feature, cost_usd FROM calls")
                from scrimp.ledger.rollup import by_lever

                levers = by_lever(store)
                routing = _routing_summary(store)
                budget = _budget_summary(store)
                from scrimp.promptcache.report import prompt_cache_report

                prompt_cache = {r["feature"]: r for r in prompt_cache_report(store)}
            via.provider_calls = sim.counters.snapshot()["totals"]["requests"]
        offload = intents.run(sim_url, progress)  # the intent feature, offloaded after a warm-up (own gateway)
        chat = conversation.run(sim_url, progress)  # a long research chat, with and without trim (own gateways)
    # The scrimp run's costs come from its ledger (what scrimp would bill), not from the answers' usage.
    via.cost = sum(r[1] for r in rows)
    via.cost_by_workload = defaultdict(float)
    names = {"support": "support", "agent": "agent", "nightly-summary": "nightly"}
    for feature, cost in rows:
        via.cost_by_workload[names.get(feature, feature)] += cost
    for lever in levers:  # net: a lever's costs (cache writes, shadow calls) count against its savings
        via.saving_by_lever[lever["lever"]] += lever["saved_usd"]
        via.hits_by_lever[lever["lever"]] += lever["calls"]
    report = _report(calls, direct, via)
    report["lines"].append(routing["line"])
    report["routing"] = routing
    report["lines"].append(budget["line"])
    report["budget"] = budget
    report["lines"].append(offload["line"])
    report["offload"] = offload
    report["lines"].append(chat["line"])
    report["conversation"] = chat
    agent = prompt_cache.get("agent")
    if agent:
        line = (f"prompt cache (agent loop): {100 * agent['hit_ratio']:.1f}% of cacheable input tokens read from cache; "
                f"writes cost +${agent['write_premium_usd']:.4f}, reads saved ${agent['read_savings_usd']:.4f}")
        report["lines"].append(line)
        report["prompt_cache_hit_ratio"] = agent["hit_ratio"]
    for line in report["lines"]:
        out(line)
    return report


def _wait_for_shadow(app: Any, timeout_s: float = 30.0) -> None:
    """Shadow evaluations finish in the background; give them a bounded moment before reading the ledger."""
    stage = next((s for s in app.state.gateway.stages if s.name == "router"), None)
    deadline = time.monotonic() + timeout_s
    while stage and any(r.shadow and r.shadow.in_flight for r in stage.routes.values()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)


def _routing_summary(store: Any) -> dict[str, Any]:
    import json

    decisions = [json.loads(d) for (d,) in store.query(
        "SELECT decisions FROM calls WHERE feature = 'support' AND cache = 'miss'")]
    routed = [d.get("routed_model") for d in decisions if d.get("routed_model")]
    cheap = sum(m == "gpt-4o-mini" for m in routed)
    # quality kept: on the calls the cheap model answered, did a shadow gpt-4o answer agree?
    scores = [s for (s,) in store.query("SELECT score FROM shadow WHERE served = 'cheap'") if s is not None]
    quality = f"{sum(scores) / len(scores):.0%}" if scores else "-"
    line = (f"routing (support): {cheap} of {len(routed)} uncached calls answered by gpt-4o-mini instead of gpt-4o; "
            f"shadow checks of those: {len(scores)} sampled, gpt-4o-mini matched gpt-4o in {quality}")
    return {"line": line, "cheap": cheap, "routed": len(routed), "shadow_samples": len(scores),
            "shadow_quality": sum(scores) / len(scores) if scores else None}


def _budget_summary(store: Any) -> dict[str, Any]:
    import json

    models = [(m, json.loads(d).get("budget_downgrade")) for m, d in store.query(
        "SELECT served_model, decisions FROM calls WHERE feature = 'agent' ORDER BY ts")]
    downgraded = sum(1 for _m, d in models if d)
    spent = sum(c for (c,) in store.query("SELECT cost_usd FROM calls WHERE feature = 'agent'"))
    alerts = store.query("SELECT COUNT(*) FROM events WHERE kind = 'budget_alert'")[0][0]
    line = (f"budget (agent, $0.06 a day): ${spent:.4f} spent; alert at 50% fired {alerts}x; at 60% the last "
            f"{downgraded} of {len(models)} calls were downgraded from claude-sonnet-4-6 to claude-haiku-4-5")
    return {"line": line, "downgraded": downgraded, "calls": len(models), "spent": spent, "alerts": alerts}


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def _report(calls: list[DemoCall], direct: RunResult, via: RunResult) -> dict[str, Any]:
    saved = direct.cost - via.cost
    lines = [
        "",
        f"scrimp demo: {len(calls)} calls (support assistant, agent loop, nightly summaries) replayed against the",
        "simulated OpenAI and Anthropic APIs, once straight to the providers and once through scrimp.",
        PIPELINE_LINE,
        "",
        f"{'':<26}{'direct':>14}{'via scrimp':>14}",
        f"{'calls to providers':<26}{direct.provider_calls:>14}{via.provider_calls:>14}",
        f"{'cost (USD)':<26}{direct.cost:>14.4f}{via.cost:>14.4f}",
        f"{'saved':<26}{'':>14}{_pct(saved, direct.cost):>14}",
        f"{'quality (graded answers)':<26}{f'{direct.correct}/{direct.graded}':>14}{f'{via.correct}/{via.graded}':>14}",
        (f"{'latency p50 (ms)':<26}{statistics.median(direct.latencies) * 1e3:>14.1f}"
        f"{statistics.median(via.latencies) * 1e3:>14.1f}"),
        "",
        "cost by workload (USD):",
    ]
    for name in ("support", "agent", "nightly"):
        d, v = direct.cost_by_workload.get(name, 0.0), via.cost_by_workload.get(name, 0.0)
        lines.append(f"  {name:<24}{d:>14.4f}{v:>14.4f}   saved {_pct(d - v, d)}")
    lines.append("")
    lines.append("saving per lever:")
    for stage, amount in sorted(via.saving_by_lever.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {stage:<24}{amount:>14.4f}   ({via.hits_by_lever[stage]} calls)")
    if not via.saving_by_lever:
        lines.append("  (none)")
    return {"lines": lines, "direct_cost": direct.cost, "scrimp_cost": via.cost, "saved": saved,
            "direct_quality": (direct.correct, direct.graded), "scrimp_quality": (via.correct, via.graded),
            "provider_calls": (direct.provider_calls, via.provider_calls), "levers": dict(via.saving_by_lever)}
