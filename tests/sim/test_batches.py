"""Both providers' Batch APIs, through the official SDKs."""

from __future__ import annotations

import io
import json
import time

import anthropic
import openai
import pytest

from scrimp.sim.config import SimConfig
from scrimp.sim.testing import run_simulator


@pytest.fixture
def batch_sim():
    with run_simulator(SimConfig(batch_delay_s=0.3)) as (url, _app):
        yield url


def wait(get, done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        obj = get()
        if done(obj):
            return obj
        assert time.monotonic() < deadline, f"batch did not finish: {obj}"
        time.sleep(0.05)


def bodies():
    return [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 30}
            for i in range(3)]


def test_openai_batch_results_match_per_request_calls(batch_sim):
    c = openai.OpenAI(base_url=batch_sim + "/v1", api_key="k", max_retries=0)
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": b}
             for i, b in enumerate(bodies())]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}})
    upload = c.files.create(file=("in.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                            purpose="batch")
    batch = c.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "validating"
    batch = wait(lambda: c.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert batch.request_counts.total == 4 and batch.request_counts.completed == 3
    assert batch.request_counts.failed == 1
    out = [json.loads(x) for x in c.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in c.files.content(batch.error_file_id).text.splitlines()]
    assert errors[0]["custom_id"] == "bad" and errors[0]["response"]["status_code"] == 404
    for line in out:
        body = bodies()[int(line["custom_id"][1:])]
        direct = c.chat.completions.create(**body)
        got = line["response"]["body"]
        assert got["choices"][0]["message"]["content"] == direct.choices[0].message.content
        assert got["usage"]["completion_tokens"] == direct.usage.completion_tokens
    assert batch.id in [b.id for b in c.batches.list()]


def test_openai_invalid_file_fails_and_cancel_cancels(batch_sim):
    c = openai.OpenAI(base_url=batch_sim + "/v1", api_key="k", max_retries=0)
    bad = c.files.create(file=("bad.jsonl", io.BytesIO(b"{not json}\n")), purpose="batch")
    batch = c.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait(lambda: c.batches.retrieve(batch.id), lambda b: b.status != "validating")
    assert failed.status == "failed" and failed.errors.data[0].code == "invalid_json_line"

    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": bodies()[0]}
    good = c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = c.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert c.batches.cancel(batch.id).status == "cancelling"
    assert wait(lambda: c.batches.retrieve(batch.id), lambda b: b.status == "cancelled").cancelled_at


def test_openai_batch_past_its_window_expires(batch_sim):
    c = openai.OpenAI(base_url=batch_sim + "/v1", api_key="k", max_retries=0)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": bodies()[0]}
    up = c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = c.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions",
                             completion_window="0.1s")  # type: ignore[arg-type]
    assert wait(lambda: c.batches.retrieve(batch.id), lambda b: b.status == "expired").request_counts.failed == 1


def test_anthropic_message_batch(batch_sim):
    c = anthropic.Anthropic(base_url=batch_sim, api_key="k", max_retries=0)
    params = {"model": "claude-haiku-4-5", "max_tokens": 30, "messages": [{"role": "user", "content": "hello"}]}
    batch = c.messages.batches.create(requests=[
        {"custom_id": "ok", "params": params},
        {"custom_id": "bad", "params": {"model": "claude-haiku-4-5", "messages": params["messages"]}},
    ])
    assert batch.processing_status == "in_progress"
    ended = wait(lambda: c.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == 1
    results = {r.custom_id: r.result for r in c.messages.batches.results(batch.id)}
    direct = c.messages.create(**params)
    assert results["ok"].type == "succeeded" and results["ok"].message.content[0].text == direct.content[0].text
    assert results["bad"].type == "errored"
    assert batch.id in [b.id for b in c.messages.batches.list()]


def test_anthropic_batch_cancel(batch_sim):
    c = anthropic.Anthropic(base_url=batch_sim, api_key="k", max_retries=0)
    params = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    batch = c.messages.batches.create(requests=[{"custom_id": "a", "params": params}])
    assert c.messages.batches.cancel(batch.id).processing_status == "canceling"
    ended = wait(lambda: c.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert ended.request_counts.canceled == 1
    assert [r.result.type for r in c.messages.batches.results(batch.id)] == ["canceled"]
