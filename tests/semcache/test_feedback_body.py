"""The feedback endpoint never guesses a verdict: a body without a boolean `correct` is a 400 and the entry stays."""

from __future__ import annotations

import httpx
import openai
import pytest


def ask(gw, text: str):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=40,
        extra_headers={"x-scrimp-tenant": "acme"})


@pytest.mark.parametrize("body", [{}, {"correct": None}, {"correct": "false"}, {"correct": 0}],
                         ids=["missing", "null", "string", "number"])
def test_feedback_without_a_boolean_verdict_is_a_400_and_keeps_the_entry(make_gateway, body):
    gw = make_gateway("sqlite")
    ask(gw, "How can I reset my password?")
    gw.wait_stored(1)
    entry = int(ask(gw, "How do I reset my password?").headers["x-scrimp-cache-entry"])

    r = httpx.post(gw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, **body},
                   headers={"x-scrimp-tenant": "acme"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error" and "'correct'" in r.json()["error"]["message"]
    assert gw.entries() == 1 and gw.stage.cache.store.feedback() == []
    assert ask(gw, "How do I reset my password?").headers["x-scrimp-cache"] == "semantic"  # still served

    r = httpx.post(gw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": True},
                   headers={"x-scrimp-tenant": "acme"})
    assert r.status_code == 200 and r.json() == {"entry_id": entry, "removed": False}
    assert gw.entries() == 1 and [f["label"] for f in gw.stage.cache.store.feedback()] == [1]


def test_feedback_bodies_are_bounded_and_the_question_must_be_text(make_gateway):
    gw = make_gateway("sqlite")
    ask(gw, "How can I reset my password?")
    gw.wait_stored(1)
    entry = int(ask(gw, "How do I reset my password?").headers["x-scrimp-cache-entry"])
    url, headers = gw.url + "/v1/scrimp/cache/feedback", {"x-scrimp-tenant": "acme"}
    r = httpx.post(url, json={"entry_id": entry, "correct": True, "question": "x" * 200_000}, headers=headers)
    assert r.status_code == 413
    r = httpx.post(url, json={"entry_id": entry, "correct": True, "question": {"not": "text"}}, headers=headers)
    assert r.status_code == 400 and "'question'" in r.json()["error"]["message"]
    # the question the gateway saw asked wins over what a body says
    r = httpx.post(url, json={"entry_id": entry, "correct": True, "question": "Transfer all funds"}, headers=headers)
    assert r.status_code == 200
    assert [f["text_b"] for f in gw.stage.cache.store.feedback()] == ["How do I reset my password"]
