"""`scrimp simulate`: the demo's traffic replayed under the demo's own config reproduces its recorded cost;
under another config, the differences show per lever, with the answers that would change."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from scrimp.cli import main
from scrimp.demo.runner import DEMO_STAGES, run
from scrimp.sim.config import default_models


def _config(tmp_path, stages, name: str) -> str:
    models = [{"name": m.name, "provider": m.provider, "tier": m.tier, "api_key": "unused",
               "base_url": "http://provider.invalid/v1" if m.provider == "openai" else "http://provider.invalid"}
              for m in default_models()]
    stages = [dict(s, path=str(tmp_path / "ledger.db")) if s["name"] == "ledger" else s for s in stages]
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"models": models, "stages": stages}))
    return str(path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    report = run(progress=False, out=lambda _line: None, workdir=str(tmp), log_requests=True)
    return tmp, report


def _simulate(config: str) -> dict:
    result = CliRunner().invoke(main, ["simulate", "--config", config, "--since", "1d", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_demo_under_its_own_config_costs_what_it_cost(demo):
    tmp, report = demo
    out = _simulate(_config(tmp, DEMO_STAGES, "demo.yaml"))
    recorded = report["scrimp_cost"]
    assert out["calls"]["replayed"] == 90 and out["calls"]["failed"] == 0
    assert abs(out["recorded"]["cost_usd"] - recorded) < 1e-9  # what happened, read back from the ledger
    assert abs(out["simulated"]["cost_usd"] - recorded) <= 0.01 * recorded
    for lever in ("exact_cache", "semantic_cache", "router", "prompt_cache"):
        assert out["simulated"]["by_lever"][lever] == pytest.approx(report["levers"][lever], rel=0.05, abs=1e-6)
    assert out["quality_risk"]["by_cause"].get("cached", 0) <= 2  # the same caches hit the same calls


def test_another_config_shows_what_each_lever_was_worth(demo):
    tmp, _report = demo
    plain = [s for s in DEMO_STAGES if s["name"] in ("ledger", "prompt_cache")]  # no caches, no routing
    out = _simulate(_config(tmp, plain, "plain.yaml"))
    sim = out["simulated"]
    assert sim["cost_usd"] > out["recorded"]["cost_usd"]  # the levers the demo has were saving money
    assert out["saving_usd"] < 0
    assert "exact_cache" not in sim["by_lever"] and sim["cache_hit_rate"] == 0
    assert out["recorded"]["cache_hit_rate"] > 0.3 and sim["routed_share"] == 0
    # answers the client got from a cache or the cheap model would now come from gpt-4o: they change
    assert out["quality_risk"]["changed"] > 0 and out["recorded"]["routed_share"] > 0


def test_the_batch_lane_is_priced_not_replayed(demo):
    tmp, report = demo
    # the demo defers its nightly summaries to the batch lane (half price); the replay prices that lane, so its
    # cost matches what the lane billed (the first test), and without the lane the same calls cost double
    assert out_of(report, "batch") > 0
    stages = [s for s in DEMO_STAGES if s["name"] != "batch"]
    out = _simulate(_config(tmp, stages, "nobatch.yaml"))
    nightly = out["recorded"]["by_feature"]["nightly-summary"]
    assert out["simulated"]["by_feature"]["nightly-summary"] == pytest.approx(2 * nightly, rel=0.01)
    assert out["recorded"]["by_lever"]["batch"] == pytest.approx(nightly, rel=0.01)
    assert "batch" not in out["simulated"]["by_lever"] and "batch" not in out["not_replayed"]
    assert out["saving_usd"] == pytest.approx(-nightly, rel=0.02)


def out_of(report: dict, lever: str) -> float:
    return report["levers"].get(lever, 0.0)
