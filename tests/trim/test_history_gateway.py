"""History trimming through the gateway: summarised once by the cheap model, reused turn after turn, the
turns the question needs quoted verbatim, and the trimmed prefix only growing."""

from __future__ import annotations

import anthropic
import pytest

HISTORY = {"history": {"trigger_tokens": 300, "keep_recent": 4, "checkpoint_every": 10, "keep_ratio": 0.8,
                       "min_keep_tokens": 150, "summary_model": "claude-haiku-4-5", "summary_max_tokens": 60}}
TRIM = {"default": HISTORY}

FILLER = ["We walked along the river and talked about the weather and the trains running late again",
          "The bakery on the corner had run out of bread so we bought crackers and some cheese instead",
          "Tomorrow the team will review the quarterly slides and argue about the colour of the charts",
          "My neighbour keeps practising the trumpet at night which makes sleeping rather difficult"]


def conversation(n: int) -> list[dict]:
    msgs = []
    for i in range(n):
        if i == 3:
            text = "By the way, the code for my gym locker is 4417, remember it for me please."
        else:
            text = f"{FILLER[i % len(FILLER)]} (day {i})."
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return msgs


def ask(gw, messages, question="What is the code for my gym locker?"):
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    return client.messages.create(model="claude-sonnet-4-6", max_tokens=20,
                                  messages=[*messages, {"role": "user", "content": question}])


def texts(body):
    return [b.get("text", "") for m in body["messages"] for b in m["content"] if isinstance(m["content"], list)]


@pytest.mark.parametrize("trim_gateway", [(TRIM, True)], indirect=True)
def test_history_is_summarised_once_reused_and_keeps_what_the_question_needs(trim_gateway):
    gw = trim_gateway
    history = conversation(30)
    first = ask(gw, history)
    history += [{"role": "user", "content": "What is the code for my gym locker?"},
                {"role": "assistant", "content": "It is 4417."}]
    second = ask(gw, history, "Thanks. And what did the bakery run out of?")

    summaries = gw.upstream("claude-haiku-4-5")
    assert len(summaries) == 1  # made once, for the first checkpoint, and reused on the next turn
    sent = gw.upstream("claude-sonnet-4-6")
    assert len(sent) == 2
    one, two = sent
    # the summarised prefix: what the cheap model wrote heads both requests, byte for byte
    assert one["messages"][0]["content"][0]["text"].startswith("[Summary of the first 20 messages")
    assert one["messages"][0]["content"][0] == two["messages"][0]["content"][0]
    # append-only: the second request repeats the first one's messages (but its final turn) and adds to them
    assert two["messages"][: len(one["messages"]) - 1] == one["messages"][:-1]
    # the turn holding the answer was summarised away but is quoted verbatim in the final turn
    assert any("4417" in t for t in texts(one)[-2:])
    assert any("bakery" in t for t in texts(two)[-2:])
    assert len(one["messages"]) == 11  # the summary heads message 20; messages 20..29 and the question follow
    assert first.content and second.content

    rows = gw.rows("SELECT lever, kind, usd FROM savings ORDER BY ts")
    history_savings = [usd for lever, kind, usd in rows if lever == "trim.history" and kind == "saving"]
    summary_costs = [usd for lever, kind, usd in rows if lever == "trim.history" and kind == "cost"]
    assert len(history_savings) == 2 and all(usd > 0 for usd in history_savings)
    assert len(summary_costs) == 1 and summary_costs[0] > 0  # the summary call, charged once


@pytest.mark.parametrize("trim_gateway", [(TRIM, True)], indirect=True)
def test_a_short_conversation_is_left_alone(trim_gateway):
    gw = trim_gateway
    ask(gw, conversation(4))
    body = gw.upstream("claude-sonnet-4-6")[0]
    assert len(body["messages"]) == 5 and not gw.upstream("claude-haiku-4-5")


@pytest.mark.parametrize("trim_gateway", [({"default": {"history": {**HISTORY["history"], "summary": False}}},
                                           True)], indirect=True)
def test_without_summary_the_prefix_is_replaced_by_a_note(trim_gateway):
    gw = trim_gateway
    ask(gw, conversation(30))
    body = gw.upstream("claude-sonnet-4-6")[0]
    assert body["messages"][0]["content"][0]["text"] == "[The first 20 messages of this conversation are left out]"
    assert not gw.upstream("claude-haiku-4-5")
