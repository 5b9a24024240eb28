"""Ledger stores and exact-cache backends against the real SQLite, PostgreSQL and Redis.

PostgreSQL and Redis default to the local servers; set SCRIMP_TEST_PG_DSN / SCRIMP_TEST_REDIS_URL to point
elsewhere. Each test uses its own schema / key prefix and removes it."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import psycopg
import pytest
import redis

from scrimp.cache.backends import RedisBackend, SQLiteBackend
from scrimp.canonical import ChatRequest
from scrimp.ledger.schema import NAMES
from scrimp.ledger.stage import LedgerStage
from scrimp.ledger.store import PostgresLedger, SQLiteLedger
from scrimp.pipeline import Call, Reply

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def row(i: int) -> dict:
    base = dict.fromkeys(NAMES)
    base.update(ts=time.time(), request_id=f"r{i}", tenant="t", status="ok", input_tokens=i, output_tokens=1,
                cache_read_tokens=0, cache_write_5m_tokens=0, cache_write_1h_tokens=0, reasoning_tokens=0,
                cost_usd=0.001, baseline_usd=0.002, saved_usd=0.001, stream=0)
    return base


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteLedger(tmp_path / "ledger.db")
        yield s
        s.close()
        return
    schema = "scrimp_test_" + uuid.uuid4().hex[:10]
    s = PostgresLedger(PG_DSN, schema)
    yield s
    s.close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_no_row_is_lost_on_a_graceful_close(store):
    for i in range(1500):
        store.write(row(i))
    store.close()  # drains the queue
    (count, total), = store.query("SELECT COUNT(*), SUM(input_tokens) FROM calls")
    assert count == 1500 and total == sum(range(1500))


def test_migrations_are_recorded_once(store):
    store.start()
    store.close()
    store.start()
    from scrimp.ledger.schema import MIGRATIONS

    assert store.query("SELECT version FROM scrimp_migrations ORDER BY version") == [(v,) for v, _ in MIGRATIONS]
    store.write({"ts": 1.0, "kind": "drift", "route": "qa", "detail": "{}"}, table="events")
    store.flush()
    assert store.query("SELECT kind, route FROM events") == [("drift", "qa")]


async def test_a_failing_store_never_fails_the_request(tmp_path):
    store = SQLiteLedger(tmp_path / "ledger.db")
    store.start()
    store.query("DROP TABLE calls")  # every write will now fail
    stage = LedgerStage(store)

    async def terminal(call):
        from scrimp.canonical import ChatResponse

        return Reply(response=ChatResponse(id="x", model="gpt-4o-mini", content=[{"type": "text", "text": "ok"}]),
                     served_model="gpt-4o-mini", served_provider="openai")

    call = Call(ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": [{"type": "text", "text": "q"}]}]))
    reply = await stage.handle(call, terminal)
    assert reply.response.text() == "ok"
    store.flush()
    assert store.failed_rows == 1
    store.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        b = SQLiteBackend(tmp_path / "cache.db", max_entries=3)
        b.HOT_ENTRIES = 0  # exercise the table itself
        yield b
        return
    prefix = "scrimp-test-" + uuid.uuid4().hex[:10] + ":"
    yield RedisBackend(REDIS_URL, prefix, max_entries=3)
    r = redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*"))
    if keys:
        r.delete(*keys)


async def test_ttl_expires_entries(backend):
    await backend.set("a", b"1", ttl_s=0.2)
    assert await backend.get("a") == b"1"
    await asyncio.sleep(0.3)
    assert await backend.get("a") is None


async def test_least_recently_used_entries_are_evicted_past_the_limit(backend):
    for key in ("a", "b", "c"):
        await backend.set(key, key.encode(), ttl_s=60)
        await asyncio.sleep(0.01)
    await backend.get("a")  # a is now the most recently used
    await asyncio.sleep(0.01)
    await backend.set("d", b"d", ttl_s=60)
    assert await backend.get("b") is None
    assert await backend.get("a") == b"a" and await backend.get("d") == b"d"


async def test_invalidation_by_prefix(backend):
    await backend.set("tenant1:x", b"1", ttl_s=60)
    await backend.set("tenant2:x", b"2", ttl_s=60)
    assert await backend.delete_prefix("tenant1:") == 1
    assert await backend.get("tenant1:x") is None and await backend.get("tenant2:x") == b"2"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_one_tenant_filling_the_cache_evicts_only_its_own_entries(kind, tmp_path):
    prefix = "scrimp-test-" + uuid.uuid4().hex[:10] + ":"
    b = (SQLiteBackend(tmp_path / "cache.db", max_entries=100, max_per_tenant=3) if kind == "sqlite"
         else RedisBackend(REDIS_URL, prefix, max_entries=100, max_per_tenant=3))
    try:
        await b.set("bbbb:1", b"neighbour", ttl_s=60)
        await b.set("bbbb:2", b"neighbour", ttl_s=60)
        for i in range(20):  # a noisy tenant
            await b.set(f"aaaa:{i:02d}", b"x", ttl_s=60)
            await asyncio.sleep(0.002)
        await b.get("aaaa:17")  # used again: not the least recently used any more
        await asyncio.sleep(0.002)
        await b.set("aaaa:20", b"x", ttl_s=60)
        kept = [i for i in range(21) if await b.get(f"aaaa:{i:02d}") is not None]
        assert kept == [17, 19, 20]  # its three most recently used
        assert await b.get("bbbb:1") == b"neighbour" and await b.get("bbbb:2") == b"neighbour"
        assert await b.count() == 5
        assert await b.delete_prefix("aaaa:") == 3
    finally:
        await b.close()
        if kind == "redis":
            r = redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=prefix + "*"))
            if keys:
                r.delete(*keys)
