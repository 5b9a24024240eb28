"""A budget's `defer` action hands calls to the batch lane once its share is reached; the budget is settled at
the batch price the ledger records."""

from __future__ import annotations

import asyncio

import openai
import pytest

GPT4O_MINI = (0.15, 0.60)  # USD per Mtok; the batch API bills half


def test_budget_defers_to_the_batch_lane_past_its_share(make_lane, tmp_path):
    budgets = {"name": "budgets", "path": str(tmp_path / "budgets.db"), "budgets": [{
        "name": "nightly", "feature": "nightly", "limit_usd": 1.0,
        "actions": [{"do": "defer", "at": 0.000001, "window": "1h"}, {"do": "block", "at": 1.0}]}]}
    lane = make_lane(extra=[budgets])
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=60)

    def ask(i: int) -> object:
        return client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=30, extra_headers={"x-scrimp-feature": "nightly"},
            messages=[{"role": "user", "content": f"Summarise ticket {i}."}])

    first = ask(1)  # nothing spent yet: sent now
    assert "x-scrimp-lane" not in first.headers
    second = ask(2)  # past the share: deferred
    assert second.headers["x-scrimp-lane"] == "batch"
    assert lane.endpoint_hits("batch") == 1
    u1, u2 = first.parse().usage, second.parse().usage
    cost1 = (u1.prompt_tokens * GPT4O_MINI[0] + u1.completion_tokens * GPT4O_MINI[1]) / 1e6
    cost2 = (u2.prompt_tokens * GPT4O_MINI[0] + u2.completion_tokens * GPT4O_MINI[1]) / 1e6 / 2
    stage = next(s for s in lane.gateway.stages if s.name == "budgets")
    [status] = asyncio.run(stage.status())
    assert status["reserved_usd"] == 0
    assert status["spent_usd"] == pytest.approx(cost1 + cost2, abs=1e-9)  # the deferred call at half price
    events = lane.gateway.ledger.query("SELECT kind FROM events")
    assert ("budget_defer",) in events


def test_a_deferred_call_is_never_missing_from_its_budget(make_lane, tmp_path):
    """A client that stops waiting leaves its line billed later: the budget counts its worst case at once. An
    idempotent retry, answered from the stored line, adds nothing."""
    budgets = {"name": "budgets", "path": str(tmp_path / "budgets.db"), "budgets": [
        {"name": "all", "limit_usd": 1.0}]}
    lane = make_lane(batch={"max_wait_for_answer_s": 0.1, "max_wait_s": 2.5}, extra=[budgets])
    stage = next(s for s in lane.gateway.stages if s.name == "budgets")
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=60)
    body = {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "Summarise 7."}]}
    with pytest.raises(openai.APIStatusError) as gone:
        client.chat.completions.create(**body, extra_headers={"x-scrimp-defer": "1h", "idempotency-key": "k-7"})
    assert gone.value.status_code == 504
    [after_timeout] = asyncio.run(stage.status())
    worst = stage.worst_case(_call(body), "gpt-4o-mini")
    assert after_timeout["spent_usd"] == pytest.approx(worst, abs=1e-9) and after_timeout["reserved_usd"] == 0
    # the retry picks up the stored answer once the line ends, and pays nothing more
    lane.stage.options.max_wait_for_answer_s = 30
    got = client.chat.completions.create(**body, extra_headers={"x-scrimp-defer": "1h", "idempotency-key": "k-7"})
    assert got.choices[0].message.content
    [after_retry] = asyncio.run(stage.status())
    assert after_retry["spent_usd"] == pytest.approx(worst, abs=1e-9)


def _call(body: dict) -> object:
    from scrimp.canonical import ChatRequest
    from scrimp.pipeline import Call

    return Call(ChatRequest(model=body["model"], max_tokens=body["max_tokens"], messages=[
        {"role": "user", "content": [{"type": "text", "text": body["messages"][0]["content"]}]}]))
