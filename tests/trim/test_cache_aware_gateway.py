"""A trim that would rewrite a prefix the provider holds in its prompt cache is applied only when it is cheaper,
cache writes included; with the cache cold, the same request is trimmed."""

from __future__ import annotations

import json

import anthropic
import pytest

HISTORY = {"trigger_tokens": 1600, "keep_recent": 4, "checkpoint_every": 10, "keep_ratio": 0.4,
           "min_keep_tokens": 100, "summary_model": "claude-haiku-4-5", "summary_max_tokens": 60}
WARM = {"default": {"history": HISTORY}}
COLD = {"default": {"history": HISTORY}, "cache_ttl_s": 0}


def conversation(n):
    words = ["the", "shipment", "of", "spare", "parts", "for", "the", "northern", "depot", "was", "delayed", "again", "because", "the", "ferry", "schedule", "changed", "and", "the", "customs", "office", "asked", "for", "another", "signed", "form", "before", "releasing", "the", "pallets"]
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"Message {i}: " + " ".join(words[(i + k) % len(words)] for k in range(60))}
            for i in range(n)]


def two_turns(gw):
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    history = conversation(18)
    first = client.messages.create(model="claude-sonnet-4-6", max_tokens=20,
                                   messages=[*history, {"role": "user", "content": "Where are the pallets?"}])
    history += [{"role": "user", "content": "Where are the pallets?"},
                {"role": "assistant", "content": conversation(19)[-1]["content"]}]
    second = client.messages.create(model="claude-sonnet-4-6", max_tokens=20,
                                    messages=[*history, {"role": "user", "content": "Who asked for the form?"}])
    return first, second


@pytest.mark.parametrize("trim_gateway", [(WARM, True)], indirect=True)
def test_a_trim_that_would_cost_more_with_the_prompt_cache_is_held_back(trim_gateway):
    gw = trim_gateway
    first, second = two_turns(gw)
    assert first.usage.cache_creation_input_tokens > 1000
    sent = gw.upstream("claude-sonnet-4-6")
    assert len(sent[1]["messages"]) == 21  # the whole conversation, as the client sent it...
    assert second.usage.cache_read_input_tokens >= first.usage.cache_creation_input_tokens  # ...read from cache
    assert not gw.upstream("claude-haiku-4-5")  # no summary made for a trim not applied
    decisions = [json.loads(d) for (d,) in gw.rows("SELECT decisions FROM calls ORDER BY ts")]
    held = decisions[1]["trim"]["held_back"]
    assert held["reason"] == "prompt cache" and held["wanted"]["checkpoint"] == 10 and held["sent"]["checkpoint"] == 0
    assert held["cost_wanted"] > held["cost_sent"]
    assert not [lever for (lever,) in gw.rows("SELECT lever FROM savings") if lever.startswith("trim")]


@pytest.mark.parametrize("trim_gateway", [(COLD, True)], indirect=True)
def test_the_same_trim_is_applied_when_nothing_is_cached(trim_gateway):
    gw = trim_gateway
    two_turns(gw)
    sent = gw.upstream("claude-sonnet-4-6")
    assert len(sent[1]["messages"]) == 11  # summary + messages 10..19 + the question
    assert sent[1]["messages"][0]["content"][0]["text"].startswith("[Summary of the first 10 messages")
    assert len(gw.upstream("claude-haiku-4-5")) == 1
    assert [lever for (lever,) in gw.rows("SELECT lever FROM savings WHERE kind = 'saving'")
            if lever.startswith("trim")] == ["trim.history"]
