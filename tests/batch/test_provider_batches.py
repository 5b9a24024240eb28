"""The providers' own Batch APIs through the gateway with the official SDKs: names mapped, the configured key
used, each line in the ledger once at the batch rate, however often the client retrieves."""

from __future__ import annotations

import io
import json
import time

import anthropic
import openai
import pytest


def wait(get, done, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        obj = get()
        if done(obj):
            return obj
        assert time.monotonic() < deadline, f"batch did not finish: {obj}"
        time.sleep(0.05)


def price(usage_in: int, usage_out: int, rates: tuple[float, float]) -> float:
    return (usage_in * rates[0] + usage_out * rates[1]) / 1e6


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_openai_files_and_batches(make_lane, backend):
    lane = make_lane(backend)
    c = openai.OpenAI(base_url=lane.url + "/v1", api_key="client-key", max_retries=0)
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "max_tokens": 30,
                       "messages": [{"role": "user", "content": f"Label ticket {i}"}]}} for i in range(3)]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "gpt-4o-mini", "messages": []}})  # refused by the provider: a failed line
    upload = c.files.create(file=("in.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                            purpose="batch", extra_headers={"x-scrimp-tenant": "acme"})
    batch = c.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                             extra_headers={"x-scrimp-tenant": "acme", "x-scrimp-feature": "enrich"})
    batch_id = batch.id
    for _ in range(3):  # retrieving again and again bills nothing more
        batch = wait(lambda: c.batches.retrieve(batch_id, extra_headers={"x-scrimp-tenant": "acme"}),
                     lambda b: b.status == "completed")
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 1)
    out = [json.loads(x) for x in c.files.content(batch.output_file_id,
                                                  extra_headers={"x-scrimp-tenant": "acme"}).text.splitlines()]
    errors = c.files.content(batch.error_file_id, extra_headers={"x-scrimp-tenant": "acme"}).text
    assert "bad" in errors
    assert {line["custom_id"] for line in out} == {"q0", "q1", "q2"}
    assert all(line["response"]["body"]["model"] == "gpt-4o-mini" for line in out)
    assert batch.id in [b.id for b in c.batches.list(extra_headers={"x-scrimp-tenant": "acme"})]
    rows = lane.rows()
    assert len(rows) == 4
    ok = {r["request_id"].split(":")[1]: r for r in rows if r["status"] == "ok"}
    for line in out:
        usage = line["response"]["body"]["usage"]
        row = ok[line["custom_id"]]
        full = price(usage["prompt_tokens"], usage["completion_tokens"], (0.15, 0.60))
        assert row["cost_usd"] == pytest.approx(full / 2)
        assert row["baseline_usd"] == pytest.approx(full)
        assert (row["tenant"], row["feature"], row["served_model"]) == ("acme", "enrich", "gpt-4o-mini")
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and failed[0]["cost_usd"] == 0
    # another tenant cannot see the batch
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve(batch.id, extra_headers={"x-scrimp-tenant": "other"})


def test_openai_batch_is_recorded_even_if_never_retrieved(make_lane):
    lane = make_lane()
    c = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0)
    line = {"custom_id": "only", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}}
    upload = c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    c.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait(lane.rows, lambda rows: len(rows) == 1)
    time.sleep(0.5)  # the worker keeps polling: still one row
    assert len(lane.rows()) == 1


def test_unknown_model_in_a_batch_file_is_refused(make_lane):
    lane = make_lane()
    c = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0)
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}}
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")


def test_anthropic_message_batches(make_lane):
    lane = make_lane()
    c = anthropic.Anthropic(base_url=lane.url, api_key="client-key", max_retries=0)
    reqs = [{"custom_id": f"m{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 40,
                                              "messages": [{"role": "user", "content": f"Summarise doc {i}"}]}}
            for i in range(2)]
    reqs.append({"custom_id": "sonnet", "params": {"model": "claude-sonnet-4-6", "max_tokens": 40,
                                                   "messages": [{"role": "user", "content": "Summarise doc 9"}]}})
    batch = c.messages.batches.create(requests=reqs, extra_headers={"x-scrimp-feature": "nightly"})
    assert batch.results_url is None
    batch = wait(lambda: c.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert batch.results_url.startswith(lane.url)
    for _ in range(2):  # results read twice: recorded once
        results = {r.custom_id: r for r in c.messages.batches.results(batch.id)}
    assert set(results) == {"m0", "m1", "sonnet"}
    rows = {r["request_id"].split(":")[1]: r for r in lane.rows()}
    assert len(rows) == 3
    for cid, rates in (("m0", (1.0, 5.0)), ("m1", (1.0, 5.0)), ("sonnet", (3.0, 15.0))):
        msg = results[cid].result.message
        full = price(msg.usage.input_tokens, msg.usage.output_tokens, rates)
        assert rows[cid]["cost_usd"] == pytest.approx(full / 2)
        assert rows[cid]["feature"] == "nightly"
        assert rows[cid]["served_model"] == msg.model
