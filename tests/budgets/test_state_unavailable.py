"""Budgets and rate limits whose state cannot be reached (Redis down): refused with 503 by default, or let through
unchecked with `on_store_error: allow`, counted at /metrics."""

from __future__ import annotations

import httpx
import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(scope="module")
def sim_url():
    with run_simulator() as (url, _app):
        yield url


SECTIONS = {
    "budgets": {"name": "budgets", "budgets": [{"name": "daily", "limit_usd": 10}], "redis_url": DOWN},
    "rate_limits": {"name": "rate_limits", "limits": [{"per": "tenant", "rpm": 100}], "redis_url": DOWN},
}


@pytest.mark.parametrize("stage", ["budgets", "rate_limits"])
def test_refused_with_503_by_default(sim_url, tmp_path, stage):
    app = create_app(simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}, SECTIONS[stage]]))
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                           messages=[{"role": "user", "content": "hello"}])
        assert err.value.status_code == 503
        assert "could not be checked" in err.value.body["message"] and "not sent" in err.value.body["message"]


@pytest.mark.parametrize("stage", ["budgets", "rate_limits"])
def test_allowed_unchecked_when_told(sim_url, tmp_path, stage):
    section = dict(SECTIONS[stage], on_store_error="allow")
    app = create_app(simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}, section]))
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                           messages=[{"role": "user", "content": "hello"}])
        assert r.choices[0].message.content
        name = "scrimp_budget_unchecked_total" if stage == "budgets" else "scrimp_rate_limit_unchecked_total"
        assert f"{name} 1" in httpx.get(url + "/metrics").text
