"""The request log through the gateway (openai and anthropic SDKs), over SQLite and PostgreSQL: opt-in per
feature, bodies stored redacted, tenant-scoped and paginated reads, retention, per-tenant caps, body caps."""

from __future__ import annotations

import anthropic
import openai

from scrimp.canonical import ChatRequest, ChatResponse
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import RequestLogStore
from scrimp.requestlog.writer import Limits, Pending, RequestLogWriter
from tests.requestlog.conftest import gateway, log_stage


def _ask(url: str, text: str, feature: str, tenant: str = "acme", headers: dict | None = None, **kw) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        extra_headers={"x-scrimp-feature": feature, "x-scrimp-tenant": tenant, **(headers or {})}, **kw)
    return resp.choices[0].message.content


def test_only_listed_features_are_logged_with_bodies_redacted(sim_url, ledger_section):
    log = {"features": ["faq"], "redact": {"patterns": [r"order #\d+"], "json_paths": ["metadata.customer"]}}
    with gateway(sim_url, ledger_section, log) as (url, app):
        answer = _ask(url, "My mail is jane.doe@example.com and key sk-proj-abcdefghijklmnop1234, order #4411",
                      "faq", metadata={"customer": "Jane Doe"}, store=True)
        _ask(url, "not logged: another feature", "chat")
        msg = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Refund policy?"}],
            extra_headers={"x-scrimp-feature": "faq", "x-scrimp-tenant": "globex"})
        _ask(url, "no-store is never logged", "faq", headers={"x-scrimp-cache-control": "no-store"})
        log_stage(app).flush()
        store = RequestLogStore.of_ledger(app.state.gateway.ledger)
        rows = store.entries()
        assert [r["feature"] for r in rows] == ["faq", "faq"]  # "chat" and the no-store call were not logged
        claude, gpt = rows
        assert gpt["prompt_text"] == ("My mail is [REDACTED:email] and key [REDACTED:api_key], [REDACTED]")
        assert gpt["answer_text"] == answer and gpt["status"] == "ok" and gpt["tenant"] == "acme"
        body = gpt["request_json"]
        assert body["metadata"] == {"customer": "[REDACTED]"} and body["system"][0]["text"] == "Be brief."
        assert "jane" not in str(body) and "abcdefghijklmnop" not in str(body)
        assert gpt["response_json"]["usage"]["output"] > 0 and gpt["inbound"] == "openai"
        assert claude["inbound"] == "anthropic" and claude["answer_text"] == msg.content[0].text
        assert claude["served_model"] == "claude-haiku-4-5" and claude["request_json"]["max_tokens"] == 50
        # the ledger row of the same call shares its request id
        app.state.gateway.ledger.flush()
        ledger_ids = {r for (r,) in app.state.gateway.ledger.query("SELECT request_id FROM calls")}
        assert {gpt["request_id"], claude["request_id"]} <= ledger_ids
        # tenant-scoped reads and the offload pairs
        assert [r["tenant"] for r in store.entries(tenant="globex")] == ["globex"]
        assert list(store.pairs(feature="faq", tenant="acme")) == [(gpt["prompt_text"], answer)]
        store.close()


def test_streamed_and_failed_calls_are_logged_with_their_status(sim_url, ledger_section):
    with gateway(sim_url, ledger_section, {"features": ["*"]}) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "stream me"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        log_stage(app).flush()
        store = RequestLogStore.of_ledger(app.state.gateway.ledger)
        (row,) = store.entries()
        assert row["stream"] == 1 and row["answer_text"] == text and row["status"] == "ok"
        assert row["feature"] is None
        store.close()


def _pending(i: int, tenant: str, ts: float, text: str = "hello") -> Pending:
    req = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}])
    resp = ChatResponse(id=f"r{i}", model="gpt-4o-mini", content=[{"type": "text", "text": f"answer {i}"}])
    return Pending({"ts": ts, "request_id": f"req_{i}", "tenant": tenant, "feature": "f", "status": "ok",
                    "inbound": "openai", "stream": 0}, req, resp)


def _writer(ledger_section, limits: Limits, clock) -> RequestLogWriter:
    store = RequestLogStore.from_ledger_config(ledger_section)
    writer = RequestLogWriter(store, Redactor(), limits, clock)
    writer.start()
    return writer


def test_retention_deletes_rows_older_than_the_period(ledger_section):
    now = 1_800_000_000.0
    writer = _writer(ledger_section, Limits(retention_s=7 * 86400, max_rows_per_tenant=None), lambda: now)
    for i, age_days in enumerate([10, 8, 6.9, 1, 0]):
        writer.submit(_pending(i, "t", now - age_days * 86400))
    writer.flush()  # writes, then purges
    kept = writer.store.entries(bodies=False)
    assert sorted(r["request_id"] for r in kept) == ["req_2", "req_3", "req_4"]
    writer.close()


def test_each_tenant_keeps_its_newest_rows_up_to_the_cap(ledger_section):
    now = 1_800_000_000.0
    writer = _writer(ledger_section, Limits(retention_s=None, max_rows_per_tenant=3), lambda: now)
    for i in range(8):
        writer.submit(_pending(i, "big", now + i))
    writer.submit(_pending(100, "small", now))
    writer.flush()
    store = writer.store
    assert [r["request_id"] for r in store.entries(tenant="big", bodies=False)] == ["req_7", "req_6", "req_5"]
    assert store.count(tenant="small") == 1  # another tenant's traffic never pushes it out
    # pagination: newest first, a page at a time
    first = store.entries(tenant="big", limit=2, bodies=False)
    second = store.entries(tenant="big", limit=2, after_id=first[-1]["id"], bodies=False)
    assert [r["request_id"] for r in first + second] == ["req_7", "req_6", "req_5"]
    writer.close()


def test_bodies_over_the_size_cap_are_cut_and_flagged(ledger_section):
    writer = _writer(ledger_section, Limits(max_body_bytes=2048), lambda: 1.0)
    writer.submit(_pending(1, "t", 1.0, text="word " * 5000))
    writer.submit(_pending(2, "t", 2.0, text="short question"))
    writer.flush()
    long, short = sorted(writer.store.entries(), key=lambda r: r["request_id"])
    assert long["truncated"] == 1 and short["truncated"] == 0
    assert long["bytes"] <= 2 * 2048 and "chars cut]" in long["prompt_text"]
    assert short["prompt_text"] == "short question"
    writer.close()
