"""With `auth:`, the lane's endpoints are callers' endpoints: a gateway key's tenant owns its deferred calls, jobs
and provider batches, and no other tenant sees them."""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest

from scrimp.auth.options import AuthOptions
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.options import Where, parse_options
from scrimp.sim.testing import serve_app

ADMIN = "admin-key-0123456789abcdef"


@pytest.fixture
def guarded(sim, tmp_path, lane_settings):
    sim_url, sim_app = sim
    sim_app.state.sim.reset()
    fast, _ = lane_settings
    config = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                                        {"name": "batch", **fast}])
    config.auth = parse_options(AuthOptions, {"required": True, "admin_key": ADMIN}, Where(path="auth"))
    app = create_app(config)
    with serve_app(app) as url:
        store = app.state.gateway.auth.resolver.store
        yield url, app, store.create("acme")[0], store.create("beta")[0]


def test_keys_own_their_deferred_calls_jobs_and_batches(guarded):
    url, app, acme, beta = guarded
    c = openai.OpenAI(base_url=url + "/v1", api_key=acme, max_retries=0, timeout=60)
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "a deferred question"}],
        extra_headers={"x-scrimp-defer": "1h", "x-scrimp-tenant": "beta"})  # a bound key cannot name a tenant
    line_id = raw.headers["x-scrimp-request-id"]
    store = app.state.gateway.ledger
    store.flush()
    [(tenant, key_id)] = store.query("SELECT tenant, key_id FROM calls")
    assert tenant == "acme" and key_id
    mine = {"authorization": f"Bearer {acme}"}
    theirs = {"authorization": f"Bearer {beta}"}
    assert httpx.get(f"{url}/v1/scrimp/jobs/{line_id}", headers=mine).json()["status"] == "succeeded"
    assert httpx.get(f"{url}/v1/scrimp/jobs/{line_id}", headers=theirs).status_code == 404
    job = httpx.post(url + "/v1/scrimp/jobs", headers=mine, json={"requests": [{"body": {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a job line"}]}}]}).json()
    assert httpx.get(f"{url}/v1/scrimp/jobs/{job['id']}", headers=theirs).status_code == 404
    assert httpx.post(url + "/v1/scrimp/jobs", json={"requests": []}).status_code == 401  # no key
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    upload = c.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = c.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    other = openai.OpenAI(base_url=url + "/v1", api_key=beta, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in other.batches.list()]


def test_a_keys_own_budget_holds_for_its_job_lines(sim, tmp_path, lane_settings):
    from test_jobs import wait_job

    sim_url, sim_app = sim
    sim_app.state.sim.reset()
    fast, _ = lane_settings
    config = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                                        {"name": "budgets", "path": str(tmp_path / "budgets.db")},
                                        {"name": "batch", **fast}])
    config.auth = parse_options(AuthOptions, {"required": True, "admin_key": ADMIN}, Where(path="auth"))
    app = create_app(config)
    with serve_app(app) as url:
        # $0.000001 a day: less than any one line's worst case
        tiny = app.state.gateway.auth.resolver.store.create("acme", budget_usd=0.000001, budget_period="day")[0]
        mine = {"authorization": f"Bearer {tiny}"}
        job = httpx.post(url + "/v1/scrimp/jobs", headers=mine, json={"requests": [{"body": {
            "model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "a job line"}]}}]})
        done = wait_job(url, job.json()["id"], mine)
    assert done["request_counts"]["failed"] == 1 and done["request_counts"]["succeeded"] == 0
    assert "key-" in json.dumps(done)  # refused by the key's own budget, named


@pytest.mark.parametrize("mode", ["admin", "off"])
def test_the_pass_through_batch_apis_can_be_kept_from_callers(sim, tmp_path, lane_settings, mode):
    sim_url, sim_app = sim
    sim_app.state.sim.reset()
    fast, _ = lane_settings
    config = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                                        {"name": "batch", **fast, "passthrough": mode}])
    config.auth = parse_options(AuthOptions, {"required": True, "admin_key": ADMIN}, Where(path="auth"))
    app = create_app(config)
    with serve_app(app) as url:
        acme = app.state.gateway.auth.resolver.store.create("acme")[0]
        c = openai.OpenAI(base_url=url + "/v1", api_key=acme, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            c.batches.list()
        assert refused.value.status_code == (403 if mode == "admin" else 404)
        if mode == "admin":
            assert httpx.get(url + "/v1/batches", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
        # jobs stay the callers' own either way
        job = httpx.post(url + "/v1/scrimp/jobs", headers={"authorization": f"Bearer {acme}"}, json={
            "requests": [{"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}}]})
        assert job.status_code == 200
