"""The flex lane (OpenAI's flex tier: batch price, now) and the batch discount in `scrimp usage --by lever`."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from click.testing import CliRunner

from scrimp.usage_cli import usage

GPT4O = (2.50, 10.0)


def full_price(u) -> float:
    return (u.prompt_tokens * GPT4O[0] + u.completion_tokens * GPT4O[1]) / 1e6


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=30)


BODY = {"model": "gpt-4o", "max_tokens": 40, "messages": [{"role": "user", "content": "Enrich: Acme Corp, Berlin"}]}


def test_flex_feature_is_answered_now_at_the_batch_price(make_lane, sim):
    lane = make_lane(batch={"features": {"enrich": {"flex": True}}})
    raw = client(lane.url).chat.completions.with_raw_response.create(
        **BODY, extra_headers={"x-scrimp-feature": "enrich"})
    got = raw.parse()
    assert raw.headers["x-scrimp-lane"] == "flex"
    assert lane.endpoint_hits("chat.completions.flex") == 1 and lane.endpoint_hits("batch") == 0
    [row] = lane.rows()
    assert row["cost_usd"] == pytest.approx(full_price(got.usage) / 2)
    assert json.loads(row["decisions"])["batch"] == "flex"


@pytest.mark.parametrize("fallback", ["standard", "batch"])
def test_busy_flex_tier_falls_back_as_the_policy_says(make_lane, sim, fallback):
    config = sim[1].state.sim.config
    config.flex_429_rate = 1.0
    try:
        lane = make_lane(batch={"features": {"enrich": {"flex": True, "on_flex_busy": fallback}}})
        raw = client(lane.url).chat.completions.with_raw_response.create(
            **BODY, extra_headers={"x-scrimp-feature": "enrich"})
    finally:
        config.flex_429_rate = 0.0
    got = raw.parse()
    [row] = lane.rows()
    decisions = json.loads(row["decisions"])
    assert decisions["flex"] == f"busy: {fallback}"
    if fallback == "standard":
        assert row["cost_usd"] == pytest.approx(full_price(got.usage))
        assert lane.endpoint_hits("batch") == 0
    else:
        assert row["cost_usd"] == pytest.approx(full_price(got.usage) / 2)
        assert lane.endpoint_hits("batch") == 1


def test_usage_by_lever_counts_the_batch_discount(make_lane, tmp_path):
    lane = make_lane(batch={"features": {"nightly": {"defer": "1h"}}})
    c = client(lane.url)
    costs = []
    for text in ("Summarise A", "Summarise B"):
        got = c.chat.completions.create(**{**BODY, "messages": [{"role": "user", "content": text}]},
                                        extra_headers={"x-scrimp-feature": "nightly"})
        costs.append(full_price(got.usage))
    lane.gateway.ledger.flush()
    out = CliRunner().invoke(usage, ["--db", str(tmp_path / "ledger.db"), "--by", "lever", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    rows = data["rows"] if isinstance(data, dict) and "rows" in data else data
    batch = next(r for r in rows if r.get("lever") == "batch")
    assert batch["calls"] == 2
    assert batch["saved_usd"] == pytest.approx(sum(costs) / 2)
    # /metrics and the dashboard's roll-ups see the lines the lane wrote itself
    metrics = httpx.get(lane.url + "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("scrimp_lever_saved_usd_total") and 'lever="batch"'
                in x)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(sum(costs) / 2)


def test_batch_status_command(make_lane, tmp_path):
    from scrimp.batch_cli import batch

    lane = make_lane()
    client(lane.url).chat.completions.create(**BODY, extra_headers={"x-scrimp-defer": "1h"})
    out = CliRunner().invoke(batch, ["status", "--db", str(tmp_path / "ledger.db"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["lines"] == {"done": 1} and report["unrecorded"] == 0
    assert report["batches"] == {"ended": 1} and report["lease"] is not None
    table = CliRunner().invoke(batch, ["status", "--db", str(tmp_path / "ledger.db")])
    assert "queued 0" in table.output and "ended 1" in table.output
    missing = CliRunner().invoke(batch, ["status", "--db", str(tmp_path / "nothing.db")])
    assert missing.exit_code != 0 and "no ledger" in missing.output
