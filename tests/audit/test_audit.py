"""`scrimp audit` on a generated week of traffic names the planted waste, with the dollars priced by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scrimp.cli import main

# USD per token (hand-written list prices): gpt-4o $2.50 / $10 per Mtok, claude-sonnet-4-6 $3 / $15, read $0.30
GPT4O_IN, GPT4O_OUT = 2.50e-6, 10.0e-6


def _audit(args: list[str], *more: str) -> dict:
    result = CliRunner().invoke(main, ["audit", "--since", "8d", "--json", *args, *more])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _by(report: dict) -> dict[tuple[str, str], dict]:
    return {(f["check"], f["feature"]): f for f in report["findings"]}


def test_audit_names_the_planted_waste(week):
    args, made = week
    report = _audit(args)
    found = _by(report)
    feats = made["features"]

    # the volatile system prompt: ~1,500 tokens re-sent uncached on every assistant call
    vol = found[("volatile_prefix", "assistant")]
    assert "<date>" in vol["evidence"]["volatile"] and vol["evidence"]["system_tokens"] > 1024
    assert "move_volatile: true" in vol["how"] and vol["saving_usd"] > 0
    # each call but the first would read the prefix at $0.30 instead of $3 per Mtok: at most 90% of its input
    sonnet_input = feats["assistant"]["input"] * 3.0e-6
    assert 0.5 * sonnet_input < vol["saving_usd"] < 0.9 * sonnet_input

    # the feature without max_tokens, and only that one
    assert ("no_max_tokens", "reports") in found
    assert {f for c, f in found if c == "no_max_tokens"} == {"reports"}
    assert found[("no_max_tokens", "reports")]["evidence"]["calls"] == feats["reports"]["calls"]

    # the batchable nightly job: half its spend, priced by hand from its tokens
    nightly = found[("batchable", "nightly")]
    spend = feats["nightly"]["input"] * GPT4O_IN + feats["nightly"]["output"] * GPT4O_OUT
    assert abs(nightly["saving_usd"] - spend / 2) < 1e-6 * spend
    assert "defer" in nightly["how"] and nightly["evidence"]["off_hours_share"] == 1.0
    assert {f for c, f in found if c == "batchable"} == {"nightly"}  # streamed / daytime features are not

    # the cacheable FAQ: every repeat of one of 12 questions was paid again
    faq = found[("cacheable_prompts", "faq")]
    repeats = feats["faq"]["calls"] - 12
    assert faq["evidence"]["repeats"] == repeats and faq["evidence"]["distinct_requests"] == 12
    per_call = faq["saving_usd"] / repeats
    assert 15 * GPT4O_IN + 10 * GPT4O_OUT < per_call < 60 * GPT4O_IN + 40 * GPT4O_OUT
    assert "exact_cache" in faq["how"]
    assert ("offload", "faq") in found  # 12 answers, again and again

    # the agent's old turns and long tool output: most of its input would go, priced at claude-haiku-4-5's $1
    trim = found[("trimmable_input", "agent")]
    assert trim["evidence"]["share"] > 0.5 and "keep_recent: 6" in trim["how"]
    assert trim["saving_usd"] < feats["agent"]["input"] * 1.0e-6
    assert {f for c, f in found if c == "trimmable_input"} == {"agent"}
    agent = next(f for f in report["features"] if f["feature"] == "agent")
    assert agent["trimmable_share"] == trim["evidence"]["share"] and agent["no_max_tokens_share"] == 0

    # reports: gpt-4o-mini agreed on 19 of 20 shadow checks; its calls repriced at $0.15 / $0.60 per Mtok
    move = found[("cheaper_model", "reports")]
    rep = feats["reports"]
    assert move["evidence"]["agreement"] == 0.95 and move["evidence"]["samples"] == 20
    assert move["saving_usd"] == pytest.approx(rep["input"] * (2.50 - 0.15) / 1e6 + rep["output"] * (10 - 0.60) / 1e6)
    assert "cheap: gpt-4o-mini" in move["how"] and ("untested_model", "reports") not in found
    assert found[("untested_model", "nightly")]["confidence"] == "untested"

    # greeting: five prompts repeated at temperature 0.9, which no cache may reuse as they are
    sampled = found[("temperature", "greeting")]
    assert sampled["evidence"]["repeats"] == feats["greeting"]["calls"] - 5
    assert sampled["evidence"]["temperatures"] == [0.9] and "any_temperature: true" in sampled["how"]
    assert ("cacheable_prompts", "greeting") not in found

    # the control feature shows none of it; its exact-cache hits show in its hit rate
    assert not [k for k in found if k[1] == "chat"]
    chat = next(f for f in report["features"] if f["feature"] == "chat")
    assert chat["cache_hit_rate"] == feats["chat"]["hits"] / feats["chat"]["calls"] > 0
    # the top prompts by template mark the FAQ questions exact-cacheable
    faq_prompts = [p for p in report["prompts"] if p["feature"] == "faq"]
    assert faq_prompts and all(p["cacheable"] == "exact" for p in faq_prompts)

    # the headline: cost per successful request, per feature, with its trend
    totals = report["totals"]
    assert totals["calls"] == sum(f["calls"] for f in feats.values())
    assert abs(totals["cost_per_success_usd"] - totals["cost_usd"] / totals["calls"]) < 1e-12
    row = next(f for f in report["features"] if f["feature"] == "nightly")
    assert abs(row["cost_usd"] - spend) < 1e-9 * spend and len(row["trend"]["daily"]) >= 7


def test_text_and_html_reports(week, tmp_path):
    args, _made = week
    out = tmp_path / "audit.html"
    result = CliRunner().invoke(main, ["audit", "--since", "8d", "--html", str(out), *args])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "cost per successful request" in text and "findings (largest saving first)" in text
    assert "[batch/batchable] 'nightly'" in text and "move_volatile" in text
    page = out.read_text()
    assert "nightly" in page and "<h2>Findings</h2>" in page
    assert ('new Chart(' in page and 'chart-spend' in page) or 'data-chart="spend"' in page


def test_a_ledger_without_request_log_still_audits(tmp_path):
    from scrimp.ledger.store import SQLiteLedger

    store = SQLiteLedger(tmp_path / "empty.db")
    store.start()
    store.close()
    result = CliRunner().invoke(main, ["audit", "--db", str(tmp_path / "empty.db"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["findings"] == [] and "no request log" in report["notes"][0]
