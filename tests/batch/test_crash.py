"""SIGKILL the gateway at several points of a line's life, restart it, and check that every request is answered
(or reported failed) and that the ledger holds exactly one row per line, and the provider ran each line once."""

from __future__ import annotations

import concurrent.futures as cf
import sqlite3
import time

import httpx
import openai
import pytest

from scrimp.batch.gateway_process import GatewayProcess, config_for
from scrimp.sim.batches import store_of
from scrimp.sim.config import SimConfig
from scrimp.sim.testing import run_simulator

LANE = {"max_wait_s": 0.4, "poll_s": 0.1, "tick_s": 0.05, "lease_s": 1.0, "record_grace_s": 0.3}


def until(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def db_count(path, sql) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


@pytest.fixture
def crash_env(tmp_path):
    with run_simulator(SimConfig(batch_delay_s=0.6)) as (sim_url, sim_app):
        ledger = tmp_path / "ledger.db"
        gw = GatewayProcess(config_for(sim_url, {"path": str(ledger)}, LANE), tmp_path)
        gw.start()
        try:
            yield gw, ledger, sim_app.state.sim
        finally:
            gw.stop()


def question(i: int) -> dict:
    return {"model": "gpt-4o-mini", "max_tokens": 25, "messages": [{"role": "user", "content": f"Crash line {i}"}]}


def job(gw, lines: range) -> str:
    got = httpx.post(gw.url + "/v1/scrimp/jobs", json={"requests": [
        {"custom_id": str(i), "body": question(i)} for i in lines]}, timeout=10)
    assert got.status_code == 200, got.text
    return got.json()["id"]


def job_done(gw, job_id) -> dict | None:
    got = httpx.get(f"{gw.url}/v1/scrimp/jobs/{job_id}", timeout=10).json()
    return got if got["status"] == "completed" else None


def test_sigkill_at_every_stage_loses_nothing_and_bills_nothing_twice(crash_env):
    gw, ledger, sim = crash_env
    jobs: dict[str, range] = {}

    # 1. while queuing: held-open deferred calls (with idempotency keys) and a job, killed before any submission
    def deferred(i: int) -> str:
        key = {"x-scrimp-defer": "1h", "idempotency-key": f"held-{i}"}
        while True:  # a client that retries after a dropped connection, with the same key
            try:
                c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=60)
                return c.chat.completions.create(**question(100 + i), extra_headers=key).choices[0].message.content
            except (openai.APIConnectionError, openai.InternalServerError):
                time.sleep(0.2)
    pool = cf.ThreadPoolExecutor(4)
    held = [pool.submit(deferred, i) for i in range(4)]
    jobs[job(gw, range(6))] = range(6)
    until(lambda: db_count(ledger, "SELECT COUNT(*) FROM batch_lines WHERE state = 'queued'") >= 6, what="queued")
    gw.kill()
    gw.start()

    # 2. after submitting: a provider batch is in flight
    jobs[job(gw, range(6, 12))] = range(6, 12)
    until(lambda: db_count(ledger, "SELECT COUNT(*) FROM batch_batches WHERE state = 'submitted'") >= 1,
          what="submitted")
    gw.kill()
    gw.start()

    # 3. while fetching results: the provider's batch has just ended
    ended_before = sum(b["status"] == "completed" for b in store_of(sim).openai.values())
    jobs[job(gw, range(12, 18))] = range(12, 18)
    until(lambda: sum(b["status"] == "completed" for b in store_of(sim).openai.values()) > ended_before,
          what="the provider batch to end")
    gw.kill()
    gw.start()

    answers = [f.result(timeout=60) for f in held]
    assert all(answers)
    for job_id, lines in jobs.items():
        got = until(lambda job_id=job_id: job_done(gw, job_id), what=f"job {job_id}")
        assert [r["custom_id"] for r in got["results"]] == [str(i) for i in lines]
        assert all(r["status"] == "succeeded" for r in got["results"])
    pool.shutdown()
    total = 18 + 4
    until(lambda: db_count(ledger, "SELECT COUNT(*) FROM batch_lines WHERE recorded = 1") == total, what="recorded")
    gw.stop()  # a clean stop flushes the ledger
    with sqlite3.connect(ledger) as conn:
        per_line = conn.execute("SELECT request_id, COUNT(*) FROM calls GROUP BY request_id").fetchall()
        assert len(per_line) == total and all(n == 1 for _, n in per_line)
        assert conn.execute("SELECT COUNT(*) FROM calls WHERE status = 'ok' AND cost_usd > 0").fetchone()[0] == total
    # the provider ran each line once
    assert sim.counters.snapshot()["models"]["gpt-4o-mini"]["requests"] == total
