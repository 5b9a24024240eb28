"""Deferred calls (x-scrimp-defer) with the official SDKs: answered like a direct call, priced at the batch rate,
recorded once, with the batch discount under the lever "batch"."""

from __future__ import annotations

import concurrent.futures as cf
import json

import anthropic
import openai
import pytest

GPT4O_MINI = (0.15, 0.60)  # USD per Mtok
HAIKU = (1.0, 5.0)


def oa(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=60)


def an(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=60)


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_deferred_openai_call_is_answered_at_half_price(make_lane, sim, backend):
    lane = make_lane(backend)
    client = oa(lane.url)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise the night's tickets."}],
            "max_tokens": 40}
    direct = oa(sim[0]).chat.completions.create(**body)
    raw = client.chat.completions.with_raw_response.create(**body, extra_headers={
        "x-scrimp-defer": "1h", "x-scrimp-feature": "nightly", "x-scrimp-tenant": "acme"})
    got = raw.parse()
    assert got.choices[0].message.content == direct.choices[0].message.content
    assert raw.headers["x-scrimp-lane"] == "batch" and raw.headers["x-scrimp-batch"].startswith("sbatch_")
    assert lane.endpoint_hits("batch") == 1  # it went through the provider's Batch API
    usage = got.usage
    full = (usage.prompt_tokens * GPT4O_MINI[0] + usage.completion_tokens * GPT4O_MINI[1]) / 1e6
    rows = lane.rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["cost_usd"] == pytest.approx(full / 2)
    assert row["baseline_usd"] == pytest.approx(full)
    assert (row["tenant"], row["feature"], row["status"]) == ("acme", "nightly", "ok")
    assert float(raw.headers["x-scrimp-cost-usd"]) == pytest.approx(full / 2, abs=1e-8)
    assert [(lever, pytest.approx(usd)) for _, lever, usd in lane.savings()] == [("batch", full / 2)]


def test_deferred_anthropic_call_and_a_stream(make_lane, sim):
    lane = make_lane()
    client = an(lane.url)
    body = {"model": "claude-haiku-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "Classify: the export is slow."}]}
    direct = an(sim[0]).messages.create(**body)
    got = client.messages.create(**body, extra_headers={"x-scrimp-defer": "24h"})
    assert got.content[0].text == direct.content[0].text
    full = (got.usage.input_tokens * HAIKU[0] + got.usage.output_tokens * HAIKU[1]) / 1e6
    with client.messages.stream(**body, extra_headers={"x-scrimp-defer": "24h"}) as stream:
        text = "".join(stream.text_stream)
    assert text == direct.content[0].text
    rows = lane.rows()
    assert len(rows) == 2
    assert [r["stream"] for r in rows] == [0, 1]
    assert rows[0]["cost_usd"] == pytest.approx(full / 2)
    # the streamed call asked the same question, but no temperature 0: not cached, so batched too, same price
    assert rows[1]["cost_usd"] == pytest.approx(full / 2)


def test_identical_lines_in_flight_are_submitted_once(make_lane):
    lane = make_lane()
    client = oa(lane.url)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tag this ticket: billing."}],
            "max_tokens": 20}
    with cf.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.chat.completions.create(
            **body, extra_headers={"x-scrimp-defer": "1h"}).choices[0].message.content, range(6)))
    assert len(set(answers)) == 1
    rows = lane.rows()
    assert len(rows) == 6
    paid = [r for r in rows if r["cost_usd"] > 0]
    assert len(paid) == 1  # one line went to the provider; five shared its answer
    assert lane.sim.counters.snapshot()["models"]["gpt-4o-mini"]["requests"] == 1
    full = paid[0]["baseline_usd"]
    assert sum(r["saved_usd"] for r in rows) == pytest.approx(full / 2 + 5 * full)


def test_bad_window_is_refused_in_the_callers_shape(make_lane):
    lane = make_lane()
    with pytest.raises(openai.BadRequestError, match="x-scrimp-defer"):
        oa(lane.url).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                             extra_headers={"x-scrimp-defer": "soon"})
    with pytest.raises(anthropic.BadRequestError, match="x-scrimp-defer"):
        an(lane.url).messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user",
                                     "content": "x"}], extra_headers={"x-scrimp-defer": "soon"})


def test_deferred_responses_api_call(make_lane, sim):
    lane = make_lane()
    client = oa(lane.url)
    got = client.responses.create(model="gpt-4o-mini", input="Summarise the night's tickets.", max_output_tokens=40,
                                  extra_headers={"x-scrimp-defer": "1h"})
    direct = oa(sim[0]).responses.create(model="gpt-4o-mini", input="Summarise the night's tickets.",
                                         max_output_tokens=40)
    assert got.output_text == direct.output_text
    [row] = lane.rows()
    assert row["inbound"] == "responses" and json.loads(row["decisions"])["batch"] == "deferred"
    full = (got.usage.input_tokens * GPT4O_MINI[0] + got.usage.output_tokens * GPT4O_MINI[1]) / 1e6
    assert row["cost_usd"] == pytest.approx(full / 2)


def test_a_routed_deferred_call_is_queued_for_the_routed_model_and_the_savings_add_up(make_lane):
    router = {"name": "router", "routes": {"nightly": {"policy": "fixed", "model": "gpt-4o-mini"}}}
    lane = make_lane(extra=[router])
    got = oa(lane.url).chat.completions.create(
        model="gpt-4o", max_tokens=40, messages=[{"role": "user", "content": "Summarise ticket 7."}],
        extra_headers={"x-scrimp-defer": "1h", "x-scrimp-feature": "nightly"})
    u = got.usage
    mini = (u.prompt_tokens * GPT4O_MINI[0] + u.completion_tokens * GPT4O_MINI[1]) / 1e6
    gpt4o = (u.prompt_tokens * 2.50 + u.completion_tokens * 10.0) / 1e6
    [row] = lane.rows()
    assert row["served_model"] == "gpt-4o-mini"
    assert row["cost_usd"] == pytest.approx(mini / 2)
    assert row["baseline_usd"] == pytest.approx(gpt4o)  # the requested model, no lever
    savings = {lever: usd for _, lever, usd in lane.savings()}
    assert savings == {"batch": pytest.approx(mini / 2), "router": pytest.approx(gpt4o - mini)}


def test_a_finished_line_fills_the_cache(make_lane):
    lane = make_lane()
    body = {"model": "gpt-4o-mini", "max_tokens": 30, "temperature": 0,
            "messages": [{"role": "user", "content": "Which team owns exports?"}]}
    deferred = oa(lane.url).chat.completions.create(**body, extra_headers={"x-scrimp-defer": "1h"})
    again = oa(lane.url).chat.completions.with_raw_response.create(**body)  # asked now, not deferred
    assert again.headers["x-scrimp-cache"] == "exact"
    assert again.parse().choices[0].message.content == deferred.choices[0].message.content
    assert lane.endpoint_hits("batch") == 1 and lane.sim.counters.snapshot()["totals"]["requests"] == 1
