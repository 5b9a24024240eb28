"""A submission interrupted between the provider accepting a batch and the lane storing its id (a crash there)
is found again at the provider (OpenAI: the lane's token in the batch metadata; Anthropic: a new batch of the
same size), never submitted twice; one that never reached the provider is queued again."""

from __future__ import annotations

import concurrent.futures as cf

import anthropic
import openai
import pytest

from scrimp.batch import worker as worker_mod
from scrimp.batch.providers import BatchClient
from scrimp.sim.batches import store_of


@pytest.fixture
def crash_once(monkeypatch):
    """The next submission fails: after the provider took it ("after"), or before it got there ("before")."""
    monkeypatch.setattr(worker_mod, "RECOVER_AFTER_S", 0.2)
    real = BatchClient.submit
    state = {"when": None}

    async def submit(self, spec, lines, window, token):
        when, state["when"] = state["when"], None
        if when == "before":
            raise ConnectionError("the gateway died before the provider heard of it")
        remote = await real(self, spec, lines, window, token)
        if when == "after":
            raise ConnectionError("the gateway died before it stored " + remote)
        return remote
    monkeypatch.setattr(BatchClient, "submit", submit)
    return state


def provider_batches(lane, provider: str) -> int:
    return len(getattr(store_of(lane.sim), provider))


@pytest.mark.parametrize("when", ["after", "before"])
def test_openai_submission_interrupted(make_lane, crash_once, when):
    lane = make_lane()
    crash_once["when"] = when
    c = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=60)
    with cf.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: c.chat.completions.create(
            model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": f"recover {i}"}],
            extra_headers={"x-scrimp-defer": "1h"}).choices[0].message.content, range(3)))
    assert all(answers)
    assert provider_batches(lane, "openai") == 1  # found again (after) or sent once it could be (before)
    assert lane.sim.counters.snapshot()["models"]["gpt-4o-mini"]["requests"] == 3
    assert len(lane.rows()) == 3


def test_anthropic_submission_interrupted_after_the_provider_took_it(make_lane, crash_once):
    lane = make_lane()
    crash_once["when"] = "after"
    c = anthropic.Anthropic(base_url=lane.url, api_key="k", max_retries=0, timeout=60)
    with cf.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda i: c.messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": f"recover {i}"}],
            extra_headers={"x-scrimp-defer": "1h"}).content[0].text, range(2)))
    assert all(answers)
    assert provider_batches(lane, "anthropic") == 1
    assert len(lane.rows()) == 2
