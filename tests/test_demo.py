"""`scrimp demo` end to end: cheaper through scrimp, same quality, fewer provider calls."""

from __future__ import annotations

from click.testing import CliRunner

from scrimp.cli import main
from scrimp.demo.runner import run


def test_demo_saves_without_losing_quality():
    lines: list[str] = []
    report = run(progress=False, out=lines.append)
    assert report["scrimp_cost"] < report["direct_cost"]
    assert report["scrimp_quality"] == report["direct_quality"]
    direct_calls, scrimp_calls = report["provider_calls"]
    assert scrimp_calls < direct_calls
    assert report["levers"]["exact_cache"] > 0 and report["levers"]["prompt_cache"] > 0
    assert report["levers"]["semantic_cache"] > 0  # paraphrased support questions answered from the cache
    assert report["levers"]["router"] > 0 and report["routing"]["cheap"] > 0  # easy questions on gpt-4o-mini
    assert report["routing"]["shadow_samples"] > 0 and report["routing"]["shadow_quality"] == 1.0
    assert report["prompt_cache_hit_ratio"] > 0.8
    # the agent loop's daily budget: downgraded once it ran low, never before
    budget = report["budget"]
    assert 0 < budget["downgraded"] < budget["calls"] and budget["alerts"] == 1
    assert budget["spent"] < 0.06 and report["levers"]["budgets"] > 0
    assert any("saving per lever" in line for line in lines)
    # the default pipeline, with the semantic cache and the router switched on
    assert any(line.startswith("pipeline: ledger -> exact_cache -> semantic_cache -> router -> budgets -> prompt_cache")
               for line in lines)


def test_demo_command_prints_the_table():
    result = CliRunner().invoke(main, ["demo", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "via scrimp" in result.output and "exact_cache" in result.output
    assert "semantic_cache" in result.output and "routing (support)" in result.output
