"""The demo's intent feature: offloaded after its warm-up, agreeing with the LLM, saving money."""

from __future__ import annotations

from scrimp.demo import intents
from scrimp.sim.config import SimConfig, normalise_prompt
from scrimp.sim.testing import run_simulator


def test_the_intent_feature_is_offloaded_after_its_warm_up():
    cfg = SimConfig()
    cfg.workload = {normalise_prompt(w["prompt"]): {"answer": w["answer"], "difficulty": w["difficulty"]}
                    for w in intents.workload()}
    with run_simulator(cfg) as (url, app):
        report = intents.run(url, progress=False)
        provider_calls = app.state.sim.counters.snapshot()["totals"]["requests"]
    assert report["calibration"]["supported"]
    assert report["offloaded"] >= 0.5 * report["calls"]
    assert report["agreed"] == report["offloaded"]  # the simulated LLM answers each message with its intent
    # the provider saw the warm-up, the calls the model was unsure of, and the shadow checks
    shadow_checks = round(report["shadow_usd"] > 0)
    assert provider_calls >= intents.WARMUP + (report["calls"] - report["offloaded"]) + shadow_checks
    assert report["saved_usd"] > report["shadow_usd"] > 0
    assert "answered locally" in report["line"]
