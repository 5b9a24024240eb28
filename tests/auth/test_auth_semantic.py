"""The semantic cache under gateway keys: a key bound to tenant A neither gets A's entries as semantic hits nor
evicts or judges them through the feedback endpoint, whatever header or body field it sends, in either API
format and over either store; a key that may name tenants can."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from auth_helpers import ADMIN, PG_DSN

ASKED, PARAPHRASE = "How can I reset my password?", "How do I reset my password?"
SPOOF = {"x-scrimp-tenant": "acme", "x-scrimp-key-tenant": "acme"}
NO_STORE = {"x-scrimp-cache-control": "no-store"}  # the probing tenant keeps no entries of its own to hit


def ask(gw, key, text, headers=None, metadata=None):
    kw = {"metadata": metadata} if metadata else {}
    return gw.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=40,
        extra_headers=headers or {}, **kw)


def ask_anthropic(gw, key, text, headers=None, metadata=None):
    kw = {"metadata": metadata} if metadata else {}
    return gw.anthropic(key).messages.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=40,
        extra_body={"temperature": 0}, extra_headers=headers or {}, **kw)


def entries(gw) -> int:
    return gw.stage("semantic_cache").cache.store.count()


def wait_stored(gw, n: int) -> None:
    deadline = time.monotonic() + 20
    while entries(gw) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert entries(gw) >= n


def wait_writes(gw) -> None:
    stage = gw.stage("semantic_cache")
    deadline = time.monotonic() + 20
    while stage._pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not stage._pending


def feedback(gw, key, entry, correct, headers=None, **body):
    return httpx.post(gw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": correct, **body},
                      headers={"authorization": f"Bearer {key}", **(headers or {})})


@pytest.fixture(params=["sqlite", "postgres"])
def sgw(request, make_gateway, tmp_path):
    section = {"name": "semantic_cache"}
    if request.param == "sqlite":
        return make_gateway("sqlite", extra=[section | {"path": str(tmp_path / "semantic.db")}])
    schema = f"scrimp_test_auth_sem_{uuid.uuid4().hex[:10]}"

    def drop() -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return make_gateway("sqlite", extra=[section | {"dsn": PG_DSN, "schema": schema}], cleanup=drop)


def test_a_bound_key_gets_no_semantic_hit_and_cannot_evict_or_judge_another_tenants_entry(sgw):
    acme, globex = sgw.key("acme"), sgw.key("globex")
    ask(sgw, acme, ASKED)
    wait_stored(sgw, 1)
    hit = ask(sgw, acme, PARAPHRASE)
    assert hit.headers["x-scrimp-cache"] == "semantic"  # acme's own paraphrase hits
    entry = int(hit.headers["x-scrimp-cache-entry"])

    # globex, naming acme in every way it can: no hit (OpenAI and Anthropic formats), no eviction, no verdict
    assert ask(sgw, globex, PARAPHRASE, headers={**SPOOF, **NO_STORE},
               metadata={"tenant": "acme"}).headers["x-scrimp-cache"] == "miss"
    assert ask_anthropic(sgw, globex, PARAPHRASE, headers={**SPOOF, **NO_STORE},
                         metadata={"tenant": "acme"}).headers["x-scrimp-cache"] == "miss"
    wait_writes(sgw)
    before = entries(sgw)
    assert before == 1
    for verdict in (False, True):
        r = feedback(sgw, globex, entry, verdict, headers=SPOOF, tenant="acme", metadata={"tenant": "acme"})
        assert r.status_code == 404, r.text
    r = httpx.post(sgw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": False},
                   headers={"x-api-key": globex, "anthropic-version": "2023-06-01", **SPOOF})
    assert r.status_code == 404
    assert entries(sgw) == before and sgw.stage("semantic_cache").cache.store.feedback() == []
    assert ask(sgw, acme, PARAPHRASE).headers["x-scrimp-cache"] == "semantic"  # still acme's

    # without a key, or with an unknown one, the endpoint answers 401 and touches nothing
    assert httpx.post(sgw.url + "/v1/scrimp/cache/feedback", json={"entry_id": entry, "correct": False},
                      headers=SPOOF).status_code == 401
    assert feedback(sgw, "sk-scrimp-unknown-0000000000", entry, False).status_code == 401
    # nor is it an admin endpoint: the admin key is not a tenant's
    assert feedback(sgw, ADMIN, entry, False, headers=SPOOF).status_code == 403
    assert entries(sgw) == before

    # acme's own verdict removes it
    r = feedback(sgw, acme, entry, False)
    assert r.status_code == 200 and r.json()["removed"] is True
    assert entries(sgw) == before - 1


def test_a_key_that_may_set_the_tenant_acts_for_the_tenant_it_names(sgw):
    acme, platform = sgw.key("acme"), sgw.key("platform", may_set_tenant=True)
    ask(sgw, acme, ASKED)
    wait_stored(sgw, 1)
    hit = ask(sgw, platform, PARAPHRASE, metadata={"tenant": "acme"})
    assert hit.headers["x-scrimp-cache"] == "semantic"
    entry = int(hit.headers["x-scrimp-cache-entry"])
    assert feedback(sgw, platform, entry, False).status_code == 404  # as itself ("platform"): not its entry
    r = feedback(sgw, platform, entry, False, headers={"x-scrimp-tenant": "acme"})
    assert r.status_code == 200 and r.json()["removed"] is True
