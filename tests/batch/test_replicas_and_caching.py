"""Two gateways sharing one PostgreSQL ledger: one submits and polls, both answer their own callers, every line
once. And Anthropic prompt caching inside batches: cache reads and writes at the batch rate too."""

from __future__ import annotations

import concurrent.futures as cf
import uuid

import anthropic
import openai
import pytest

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import serve_app

SONNET = {"input": 3.0, "output": 15.0, "read": 0.30, "write_5m": 3.75}


def test_two_replicas_share_the_queue_and_bill_each_line_once(sim, lane_settings):
    sim_url, sim_app = sim
    fast, pg_dsn = lane_settings
    sim_app.state.sim.reset()
    schema = "scrimp_batch_" + uuid.uuid4().hex[:10]
    stages = [{"name": "ledger", "dsn": pg_dsn, "schema": schema}, {"name": "batch", **fast}]
    apps = [create_app(simulated(sim_url, stages=stages)) for _ in range(2)]
    try:
        with serve_app(apps[0]) as a, serve_app(apps[1]) as b:
            def ask(i: int) -> str:
                url = (a, b)[i % 2]
                c = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=60)
                return c.chat.completions.create(
                    model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": f"replica line {i}"}],
                    extra_headers={"x-scrimp-defer": "1h"}).choices[0].message.content
            with cf.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(ask, range(8)))
            assert all(answers)
            leaders = [next(s for s in app.state.gateway.stages if s.name == "batch").worker.leader for app in apps]
            assert sorted(leaders) == [False, True]  # exactly one replica submits and polls
            store = apps[0].state.gateway.ledger
            store.flush()
            apps[1].state.gateway.ledger.flush()
            rows = store.query("SELECT request_id, COUNT(*) FROM calls GROUP BY request_id")
            assert len(rows) == 8 and all(n == 1 for _, n in rows)
            assert sim_app.state.sim.counters.snapshot()["models"]["gpt-4o-mini"]["requests"] == 8
    finally:
        import psycopg

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_anthropic_cache_reads_and_writes_are_at_the_batch_rate_too(make_lane):
    lane = make_lane()
    c = anthropic.Anthropic(base_url=lane.url, api_key="k", max_retries=0, timeout=60)
    manual = " ".join(f"Rule {i}: escalate tickets about region {i % 9} when the error rate is high." for i in range(150))
    system = [{"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]
    usages = []
    for question in ("Ticket A: exports slow", "Ticket B: login fails"):
        got = c.messages.create(model="claude-sonnet-4-6", max_tokens=30, system=system,
                                messages=[{"role": "user", "content": question}],
                                extra_headers={"x-scrimp-defer": "1h"})
        usages.append(got.usage)
    assert usages[0].cache_creation_input_tokens > 0 and usages[1].cache_read_input_tokens > 0
    rows = lane.rows()
    assert len(rows) == 2
    for row, u in zip(rows, usages, strict=True):
        full = (u.input_tokens * SONNET["input"] + u.output_tokens * SONNET["output"]
                + (u.cache_read_input_tokens or 0) * SONNET["read"]
                + (u.cache_creation_input_tokens or 0) * SONNET["write_5m"]) / 1e6
        assert row["cost_usd"] == pytest.approx(full / 2)
        assert (row["cache_read_tokens"], row["cache_write_5m_tokens"]) == (
            u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0)
