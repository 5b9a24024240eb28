"""Fire-and-forget jobs, idempotent retries, partial failures, provider limits: what a caller sees."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scrimp.sim.testing import serve_app

SECRET = "whsec-test"


def wait_job(url: str, job_id: str, headers: dict[str, str] | None = None, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{url}/v1/scrimp/jobs/{job_id}", headers=headers or {}).json()
        if got["status"] == "completed":
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.05)


def question(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "max_tokens": 30, "temperature": 0,
            "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def webhook():
    """A receiver that refuses the first delivery (500), then accepts; keeps what it got."""
    got: list[tuple[bytes, dict[str, str]]] = []
    arrived = threading.Event()

    async def receive(request: Request) -> Response:
        got.append((await request.body(), dict(request.headers)))
        if len(got) == 1:
            return Response(status_code=500)
        arrived.set()
        return Response(status_code=204)
    with serve_app(Starlette(routes=[Route("/hook", receive, methods=["POST"])])) as url:
        yield url + "/hook", got, arrived


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_a_job_with_repeated_questions_pays_each_once_and_calls_its_webhook(make_lane, webhook, backend):
    lane = make_lane(backend, batch={"webhook_secret": SECRET, "webhook_backoff_s": 0.05})
    hook_url, got, arrived = webhook
    requests = [{"custom_id": "a", "body": question("What is the refund policy?")},
                {"custom_id": "b", "body": question("How do I export my data?")},
                {"custom_id": "a-again", "body": question("What is the refund policy?")},
                {"custom_id": "claude", "api": "anthropic",
                 "body": {"model": "claude-haiku-4-5", "max_tokens": 30, "temperature": 0,
                          "messages": [{"role": "user", "content": "What is the refund policy?"}]}},
                {"custom_id": "a-third", "body": question("What is the refund policy?")}]
    created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": requests, "webhook": hook_url},
                         headers={"x-scrimp-tenant": "acme", "x-scrimp-feature": "eval"}).json()
    assert created["object"] == "scrimp.job" and created["request_counts"]["total"] == 5
    job = wait_job(lane.url, created["id"], {"x-scrimp-tenant": "acme"})
    results = {r["custom_id"]: r for r in job["results"]}
    assert all(r["status"] == "succeeded" for r in results.values())
    text = results["a"]["response"]["choices"][0]["message"]["content"]
    assert results["a-again"]["response"]["choices"][0]["message"]["content"] == text
    assert results["claude"]["response"]["type"] == "message"  # each line in its request's API shape
    models = lane.sim.counters.snapshot()["models"]
    assert models["gpt-4o-mini"]["requests"] == 2  # the repeated question went to the provider once
    assert models["claude-haiku-4-5"]["requests"] == 1
    rows = lane.rows()
    assert len(rows) == 5 and {r["tenant"] for r in rows} == {"acme"} and {r["feature"] for r in rows} == {"eval"}
    assert sum(r["cost_usd"] > 0 for r in rows) == 3
    # the webhook: refused once, retried, signed with an HMAC of the body
    assert arrived.wait(10)
    body, headers = got[-1]
    assert len(got) == 2
    assert headers["x-scrimp-signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["id"] == created["id"]
    # another tenant sees nothing
    assert httpx.get(f"{lane.url}/v1/scrimp/jobs/{created['id']}", headers={"x-scrimp-tenant": "x"}).status_code == 404


def test_job_lines_a_cache_can_answer_are_not_submitted(make_lane):
    lane = make_lane()
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0)
    client.chat.completions.create(**question("Is there an API rate limit?"))  # answered now, cached
    created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [
        {"body": question("Is there an API rate limit?")}]}, headers={"authorization": "Bearer k"}).json()
    job = wait_job(lane.url, created["id"], {"authorization": "Bearer k"})  # the same caller: the same tenant
    assert job["results"][0]["status"] == "succeeded"
    assert lane.endpoint_hits("batch") == 0
    rows = lane.rows()
    assert [r["cache"] for r in rows] == ["miss", "exact"] and rows[1]["cost_usd"] == 0


def test_idempotent_retry_picks_up_the_stored_answer(make_lane):
    lane = make_lane(batch={"max_wait_s": 1.0})
    body = question("Classify: card declined twice.", temperature=0.7)  # not cacheable: only the key finds it
    headers = {"x-scrimp-defer": "1h", "idempotency-key": "job-42-line-7"}
    impatient = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):  # the connection drops before the batch ends
        impatient.chat.completions.create(**body, extra_headers=headers)
    client = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(**body, extra_headers=headers)
    again = client.chat.completions.with_raw_response.create(**body, extra_headers=headers)
    assert raw.parse().choices[0].message.content == again.parse().choices[0].message.content
    line_id = raw.headers["x-scrimp-request-id"]
    assert again.headers["x-scrimp-request-id"] == line_id
    assert lane.endpoint_hits("batch") == 1
    stored = httpx.get(f"{lane.url}/v1/scrimp/jobs/{line_id}", headers={"authorization": "Bearer k"}).json()
    assert stored["status"] == "succeeded"
    assert stored["response"]["choices"][0]["message"]["content"] == raw.parse().choices[0].message.content
    deadline = time.monotonic() + 5
    while len(lane.rows()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)  # past record_grace_s: nothing recorded twice
    rows = lane.rows()
    assert len(rows) == 1 and rows[0]["request_id"] == line_id


def test_partial_failures_are_reported_per_line(make_lane, sim):
    config = sim[1].state.sim.config
    config.batch_error_rate, config.batch_expire_rate = 0.3, 0.2
    try:
        lane = make_lane()
        created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [
            {"custom_id": str(i), "body": question(f"Ticket {i}: which team?")} for i in range(30)]}).json()
        job = wait_job(lane.url, created["id"])
    finally:
        config.batch_error_rate = config.batch_expire_rate = 0.0
    statuses = [r["status"] for r in job["results"]]
    assert 0 < statuses.count("failed") < 30 and statuses.count("succeeded") > 0
    codes = {r["error"]["status"] for r in job["results"] if r["status"] == "failed"}
    assert codes <= {500, 504} and codes
    assert job["request_counts"]["failed"] == statuses.count("failed")
    rows = lane.rows()
    assert len(rows) == 30
    assert sum(r["status"] == "error" for r in rows) == statuses.count("failed")
    assert all(r["cost_usd"] == 0 for r in rows if r["status"] == "error")


def test_lines_over_the_batch_limit_are_split(make_lane):
    lane = make_lane(batch={"max_lines": 3, "max_wait_s": 0.5})
    created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [
        {"body": question(f"Distinct question number {i}")} for i in range(7)]}).json()
    job = wait_job(lane.url, created["id"])
    assert job["request_counts"]["succeeded"] == 7
    from scrimp.sim.batches import store_of

    sizes = sorted(b["request_counts"]["total"] for b in store_of(lane.sim).openai.values())
    assert sizes == [1, 3, 3]


def test_job_errors_in_the_callers_shape(make_lane):
    lane = make_lane()
    bad = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [{"body": {"model": "gpt-9", "messages": []}}]})
    assert bad.status_code in (400, 404) and "error" in bad.json()
    no_secret = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [{"body": question("x")}],
                                                               "webhook": "http://127.0.0.1:9/x"})
    assert no_secret.status_code == 400 and "webhook_secret" in no_secret.json()["error"]["message"]


def test_a_request_that_stops_waiting_leaves_its_line_to_finish(make_lane):
    lane = make_lane(batch={"max_wait_for_answer_s": 0.1, "max_wait_s": 2.5})
    c = openai.OpenAI(base_url=lane.url + "/v1", api_key="k", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as caught:
        c.chat.completions.create(**question("A slow nightly line", temperature=0.5),
                                  extra_headers={"x-scrimp-defer": "1h"})
    assert caught.value.status_code == 504 and "/v1/scrimp/jobs/" in caught.value.message
    line_id = caught.value.response.headers["x-scrimp-request-id"]
    got = {}
    deadline = time.monotonic() + 20
    while got.get("status") != "succeeded":
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
        got = httpx.get(f"{lane.url}/v1/scrimp/jobs/{line_id}", headers={"authorization": "Bearer k"}).json()
    deadline = time.monotonic() + 10
    while not lane.rows():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [row] = lane.rows()  # one row: the line's, billed at the batch rate; none for the 504
    assert row["request_id"] == line_id and row["status"] == "ok" and row["cost_usd"] > 0


def test_old_answered_lines_and_jobs_are_forgotten(make_lane):
    lane = make_lane()
    created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [{"body": question("Forget me")}]}).json()
    wait_job(lane.url, created["id"])
    worker = lane.stage.worker
    assert worker.clean_up(before=time.time() - 3600) == 0  # younger than the retention: kept
    assert worker.clean_up(before=time.time() + 1) == 1
    assert httpx.get(f"{lane.url}/v1/scrimp/jobs/{created['id']}").status_code == 404
    assert len(lane.rows()) == 1  # the ledger keeps its row


def test_job_lines_go_through_the_pipeline_a_bounded_number_at_a_time(make_lane, monkeypatch):
    from scrimp.batch import worker as worker_mod

    monkeypatch.setattr(worker_mod, "MAX_RUNNING", 2)
    lane = make_lane(batch={"max_wait_s": 0.1})
    created = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [
        {"body": question(f"Bounded line {i}")} for i in range(5)]}).json()
    most = 0
    deadline = time.monotonic() + 30
    while httpx.get(f"{lane.url}/v1/scrimp/jobs/{created['id']}").json()["status"] != "completed":
        most = max(most, len(lane.stage.worker.running))
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert 1 <= most <= 2
    assert len(lane.rows()) == 5


def test_a_webhook_host_outside_the_allow_list_is_refused(make_lane):
    lane = make_lane(batch={"webhook_secret": SECRET, "webhook_hosts": ["hooks.example.com"]})
    refused = httpx.post(lane.url + "/v1/scrimp/jobs", json={"requests": [{"body": question("x")}],
                                                             "webhook": "http://169.254.169.254/latest"})
    assert refused.status_code == 400
    assert "'169.254.169.254' is not one this gateway posts to" in refused.json()["error"]["message"]
