"""Gateway keys through the gateway, with the official SDKs: tenants bound to keys (no header or body field
reaches another tenant's cached answers or stored responses), 401 in each API's shape, revocation, admin
endpoints, and the gateway key never reaching a provider."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest
from auth_helpers import ADMIN

Q = [{"role": "user", "content": "What is the capital of France?"}]


def chat(client: openai.OpenAI, *, headers=None, metadata=None, stream=False, content=None):
    kw = {"metadata": metadata} if metadata else {}
    messages = [{"role": "user", "content": content}] if content else Q
    if stream:
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=messages, temperature=0, max_tokens=20, stream=True,
                extra_headers=headers or {}, **kw) as resp:
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
            return resp.headers, text
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, temperature=0,
                                                           max_tokens=20, extra_headers=headers or {}, **kw)
    return raw.headers, raw.parse().choices[0].message.content


def message(client: anthropic.Anthropic, *, headers=None, metadata=None, content=None):
    kw = {"metadata": metadata} if metadata else {}
    messages = [{"role": "user", "content": content}] if content else Q
    raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", messages=messages, max_tokens=20,
                                                   extra_body={"temperature": 0}, extra_headers=headers or {}, **kw)
    return raw.headers, raw.parse().content[0].text


SPOOFS = [
    {"headers": {"x-scrimp-tenant": "acme"}},
    {"metadata": {"tenant": "acme"}},
    {"headers": {"x-scrimp-tenant": "acme", "x-scrimp-key-tenant": "acme"}, "metadata": {"tenant": "acme"}},
]


QUESTIONS = ["What is the capital of France?", "What is the capital of Peru?", "What is the capital of Chad?",
             "What is the capital of Laos?"]


def test_a_key_bound_to_a_tenant_never_reads_another_tenants_exact_cache(agw):
    acme, globex = agw.key("acme"), agw.key("globex")
    for q in QUESTIONS:
        assert chat(agw.openai(acme), content=q)[0]["x-scrimp-cache"] == "miss"
        assert chat(agw.openai(acme), content=q)[0]["x-scrimp-cache"] == "exact"  # acme's own answer is cached
    assert chat(agw.openai(acme), content=QUESTIONS[0], stream=True)[0]["x-scrimp-cache"] == "exact"
    calls = agw.sim_calls()
    # globex naming acme by header, by body, by both (and forging the guard's own header): still globex
    for q, spoof in zip(QUESTIONS, SPOOFS, strict=False):
        assert chat(agw.openai(globex), content=q, **spoof)[0]["x-scrimp-cache"] == "miss", spoof
    assert chat(agw.openai(globex), content=QUESTIONS[3], stream=True,
                headers=SPOOFS[2]["headers"])[0]["x-scrimp-cache"] == "miss"
    assert agw.sim_calls() == calls + 4
    rows = agw.rows()
    assert [(t, c) for t, _k, c, _s in rows[-4:]] == [("globex", "miss")] * 4
    # the ledger records the key that made each call
    ids = {k.tenant: k.id for k in agw.store.list()}
    assert {(t, k) for t, k, *_ in rows} == {("acme", ids["acme"]), ("globex", ids["globex"])}


def test_the_same_in_anthropics_api(agw):
    acme, globex = agw.key("acme"), agw.key("globex")
    for q in QUESTIONS[:3]:
        assert message(agw.anthropic(acme), content=q)[0]["x-scrimp-cache"] == "miss"
        assert message(agw.anthropic(acme), content=q)[0]["x-scrimp-cache"] == "exact"
    for q, spoof in zip(QUESTIONS, SPOOFS, strict=False):
        assert message(agw.anthropic(globex), content=q, **spoof)[0]["x-scrimp-cache"] == "miss", spoof
    # an Anthropic client sending its key as a bearer token is the same key
    bearer = anthropic.Anthropic(base_url=agw.url, auth_token=acme, max_retries=0)
    assert message(bearer, content=QUESTIONS[0])[0]["x-scrimp-cache"] == "exact"
    assert [t for t, *_ in agw.rows()][-4:] == ["globex", "globex", "globex", "acme"]


def test_a_key_that_may_set_the_tenant_names_it_per_request(make_gateway):
    gw = make_gateway("sqlite")
    platform = gw.key("platform", may_set_tenant=True)
    acme = gw.key("acme")
    chat(gw.openai(acme))
    # the application server serves acme's user: it reads acme's cache, by header or by body
    assert chat(gw.openai(platform), headers={"x-scrimp-tenant": "acme"})[0]["x-scrimp-cache"] == "exact"
    assert chat(gw.openai(platform), metadata={"tenant": "acme"})[0]["x-scrimp-cache"] == "exact"
    assert message(gw.anthropic(platform), metadata={"tenant": "initech"})[0]["x-scrimp-cache"] == "miss"
    # naming no tenant, it is its own tenant (not a hash of the key); a client cannot forge that default
    chat(gw.openai(platform), headers={"x-scrimp-key-tenant": "acme"}, content="Name a prime number.")
    tenants = [t for t, *_ in gw.rows()]
    assert tenants == ["acme", "acme", "acme", "initech", "platform"]


def test_a_key_bound_to_a_feature_attributes_every_call_to_it(make_gateway):
    gw = make_gateway("sqlite")
    key = gw.key("acme", feature="support", name="support-bot")
    chat(gw.openai(key), headers={"x-scrimp-feature": "billing"}, metadata={"feature": "other"})
    assert gw.rows("tenant, feature") == [("acme", "support")]


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_no_key_unknown_key_and_revoked_key_get_401_in_the_callers_shape(agw, shape):
    key = agw.key("acme")
    good = agw.openai(key) if shape == "openai" else agw.anthropic(key)
    (chat if shape == "openai" else message)(good)
    calls = agw.sim_calls()

    def call(secret):
        client = agw.openai(secret) if shape == "openai" else agw.anthropic(secret)
        with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)) as err:
            (chat if shape == "openai" else message)(client)
        return err.value

    unknown = call("sk-scrimp-not-a-real-key-0000000000000")
    assert unknown.status_code == 401
    if shape == "openai":
        assert unknown.body["code"] == "invalid_api_key" and unknown.body["type"] == "authentication_error"
    else:
        assert unknown.body["type"] == "error" and unknown.body["error"]["type"] == "authentication_error"
    assert "sk-scrimp-not-a-real" not in str(unknown.body)  # not echoed back
    rec = agw.store.list()[0]
    agw.store.revoke(rec.id)
    time.sleep(0.3)  # the key cache's TTL in these tests (0.2 s): a revoke from elsewhere is seen within it
    revoked = call(key)
    assert "revoked" in str(revoked.body)
    assert agw.sim_calls() == calls  # nothing refused reached a provider
    # no key at all: raw HTTP, in the path's shape
    path = "/v1/chat/completions" if shape == "openai" else "/v1/messages"
    r = httpx.post(agw.url + path, json={"model": "gpt-4o-mini", "messages": Q, "max_tokens": 5})
    assert r.status_code == 401 and r.headers["x-scrimp-request-id"]
    body = r.json()
    assert ("error" in body and body["error"]["type"] == "authentication_error") if shape == "openai" else \
        (body["type"] == "error" and body["error"]["type"] == "authentication_error")


def test_every_endpoint_needs_a_key_but_health(agw):
    for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/gpt-4o-mini"), ("POST", "/v1/embeddings"),
                         ("POST", "/v1/messages/count_tokens"), ("POST", "/v1/responses"),
                         ("GET", "/v1/responses/resp_x"), ("DELETE", "/v1/responses/resp_x"),
                         ("GET", "/v1/nope")]:
        r = httpx.request(method, agw.url + path, json={})
        assert r.status_code == 401, (method, path, r.text)
    assert httpx.get(agw.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}).json()["type"] == "error"
    assert httpx.get(agw.url + "/healthz").status_code == 200
    assert httpx.get(agw.url + "/metrics").status_code == 200  # open unless protect_metrics
    key = agw.key("acme")
    models = agw.openai(key).models.list()
    assert any(m.id == "gpt-4o-mini" for m in models.data)
    assert agw.openai(key).embeddings.create(model="text-embedding-3-small", input="hi").data
    assert agw.rows("tenant, key_id")[-1] == ("acme", agw.store.list()[0].id)


def test_the_gateway_key_never_reaches_a_provider(make_gateway):
    def forward_client_key(config):
        config.models["gpt-4o-mini"].api_key = None  # would forward the client's key (auth off)

    gw = make_gateway("sqlite", config_hook=forward_client_key)
    key = gw.key("acme")
    # with auth on, the provider key comes from the config only: this model has none, so the provider refuses
    gw.sim.config.require_api_key = True
    try:
        with pytest.raises(openai.AuthenticationError) as err:
            chat(gw.openai(key))
    finally:
        gw.sim.config.require_api_key = False
    assert "You didn't provide an API key" in str(err.value.body)  # the provider's refusal, not the guard's
    assert key not in repr(gw.rows("*"))


def test_admin_endpoints_need_the_admin_key(make_gateway):
    gw = make_gateway("sqlite", auth={"protect_metrics": True},
                      extra=[{"name": "router", "routes": {"default": {"policy": "fixed", "model": "gpt-4o-mini"}}}])
    key = gw.key("acme")
    tenant_key = {"authorization": f"Bearer {key}"}
    admin = {"authorization": f"Bearer {ADMIN}"}
    for method, path in [("GET", "/v1/scrimp/router/status"), ("POST", "/v1/scrimp/router/routes/default/reset"),
                         ("GET", "/metrics"), ("GET", "/v1/scrimp/keys"), ("POST", "/v1/scrimp/keys"),
                         ("POST", "/v1/scrimp/keys/key_x/revoke")]:
        assert httpx.request(method, gw.url + path).status_code == 401, path
        r = httpx.request(method, gw.url + path, headers=tenant_key)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required", path
        r = httpx.request(method, gw.url + path, headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", path
        r = httpx.request(method, gw.url + path, headers={"authorization": "Bearer sk-scrimp-unknown-000000000"})
        assert r.status_code == 401, path
    assert httpx.get(gw.url + "/v1/scrimp/router/status", headers=admin).json()["routes"]["default"]
    assert httpx.post(gw.url + "/v1/scrimp/router/routes/default/reset", headers=admin).status_code == 404  # no guard
    metrics = httpx.get(gw.url + "/metrics", headers={"x-api-key": ADMIN}).text
    assert "scrimp_up 1" in metrics
    assert 'scrimp_auth_refused_total{reason="admin_key_required"} 12' in metrics  # 6 endpoints, 2 shapes
    assert 'scrimp_auth_refused_total{reason="missing_api_key"} 6' in metrics
    # the admin key is not a tenant's key: the model APIs refuse it (it never reaches a provider)
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw.openai(ADMIN))


def test_keys_over_http_with_the_admin_key(agw):
    admin = {"authorization": f"Bearer {ADMIN}"}
    r = httpx.post(agw.url + "/v1/scrimp/keys", headers=admin,
                   json={"tenant": "acme", "name": "web", "budget_usd": 3, "period": "month"})
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("sk-scrimp-") and created["tenant"] == "acme" and created["budget_usd"] == 3
    assert chat(agw.openai(created["key"]))[1]
    listed = httpx.get(agw.url + "/v1/scrimp/keys", headers=admin).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert created["key"] not in httpx.get(agw.url + "/v1/scrimp/keys", headers=admin).text
    bad = httpx.post(agw.url + "/v1/scrimp/keys", headers=admin, json={"tenant": "acme", "colour": "blue"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "colour"
    assert httpx.post(agw.url + f"/v1/scrimp/keys/{created['id']}/revoke", headers=admin).json()["revoked"]
    with pytest.raises(openai.AuthenticationError):  # this replica forgets it at once
        chat(agw.openai(created["key"]))
    assert httpx.post(agw.url + "/v1/scrimp/keys/key_nope/revoke", headers=admin).status_code == 404


def test_a_revoke_reaches_another_replica_within_the_ttl(make_gateway, tmp_path):
    ledger = {"name": "ledger", "path": str(tmp_path / "shared.db")}
    one = make_gateway("sqlite", ledger=ledger, auth={"key_cache_ttl_s": 1.0})
    two = make_gateway("sqlite", ledger=ledger, auth={"key_cache_ttl_s": 1.0})
    key = one.key("acme")
    chat(two.openai(key))
    lookups = two.gateway.auth.resolver.lookups
    for _ in range(5):
        chat(two.openai(key))
    assert two.gateway.auth.resolver.lookups == lookups  # cached: no query per request
    rec = one.store.list()[0]
    r = httpx.post(one.url + f"/v1/scrimp/keys/{rec.id}/revoke", headers={"x-api-key": ADMIN})
    assert r.status_code == 200
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            chat(two.openai(key))
        except openai.AuthenticationError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the other replica still served a revoked key after its TTL")


def test_keys_listed_in_the_config(make_gateway, monkeypatch):
    import hashlib

    hashed = "sk-config-hashed-key-0123456789"
    gw = make_gateway("sqlite", auth={"keys": [
        {"key_sha256": hashlib.sha256(hashed.encode()).hexdigest(), "tenant": "acme", "id": "acme-web"},
        {"key": "sk-config-plain-key-0123456789", "tenant": "globex", "feature": "chat"}]})
    chat(gw.openai(hashed))
    assert chat(gw.openai("sk-config-plain-key-0123456789"), headers={"x-scrimp-tenant": "acme"})[0][
        "x-scrimp-cache"] == "miss"
    rows = gw.rows("tenant, key_id, feature")
    assert rows[0] == ("acme", "acme-web", None)
    assert rows[1][0] == "globex" and rows[1][1].startswith("cfg_") and rows[1][2] == "chat"


def test_responses_are_per_key_tenant(agw):
    acme, globex = agw.key("acme"), agw.key("globex")
    first = agw.openai(acme).responses.create(model="gpt-4o-mini", input="Say hi.", max_output_tokens=20)
    assert agw.openai(acme).responses.retrieve(first.id).id == first.id
    spoof = {"x-scrimp-tenant": "acme"}
    other = agw.openai(globex)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id, extra_headers=spoof)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(first.id, extra_headers=spoof)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-4o-mini", input="And again?", previous_response_id=first.id,
                               metadata={"tenant": "acme"}, extra_headers=spoof)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id, extra_headers=spoof)
    assert agw.openai(acme).responses.retrieve(first.id).id == first.id  # still there
    follow = agw.openai(acme).responses.create(model="gpt-4o-mini", input="And again?", previous_response_id=first.id)
    assert follow.status == "completed"


def test_without_required_a_gateway_key_is_honoured_and_other_callers_are_served_as_before(make_gateway):
    gw = make_gateway("sqlite", auth={"required": False},
                      extra=[{"name": "router", "routes": {"default": {"policy": "fixed", "model": "gpt-4o-mini"}}}])
    key = gw.key("acme")
    chat(gw.openai(key), headers={"x-scrimp-tenant": "globex"})  # bound: acme whatever it says
    chat(gw.openai("sk-provider-key-of-a-caller"), headers={"x-scrimp-tenant": "globex"})  # as before: named
    chat(gw.openai("sk-provider-key-of-a-caller"), content="Name a colour.")  # as before: a hash of its key
    rows = gw.rows("tenant, key_id")
    assert rows[0] == ("acme", gw.store.list()[0].id) and rows[1] == ("globex", None)
    assert rows[2][0].startswith("key-") and rows[2][1] is None
    gw.store.revoke(gw.store.list()[0].id)
    time.sleep(0.3)
    with pytest.raises(openai.AuthenticationError):  # a revoked gateway key is refused, never forwarded
        chat(gw.openai(key))
    # the admin key is configured: the admin endpoints need it even so
    assert httpx.get(gw.url + "/v1/scrimp/router/status").status_code == 401
    assert httpx.get(gw.url + "/v1/scrimp/router/status", headers={"x-api-key": ADMIN}).status_code == 200


def test_two_key_headers_are_refused_and_an_unknown_scrimp_key_is_never_forwarded(make_gateway):
    import httpx

    gw = make_gateway("sqlite", auth={"required": False})
    key = gw.key("acme")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body,
                   headers=[("authorization", f"Bearer {key}"), ("authorization", "Bearer junk")])
    assert r.status_code == 400 and "more than one 'authorization' header" in r.json()["error"]["message"]
    # keys not required: a provider key is forwarded as before, but a scrimp key nobody knows is refused
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-scrimp-typo"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_a_caller_hanging_up_during_a_key_lookup_does_not_stall_the_others():
    import asyncio
    import threading

    from scrimp.auth.options import AuthOptions
    from scrimp.auth.resolver import KeyResolver

    release = threading.Event()

    class SlowStore:
        where = "test"

        def lookup(self, digest):
            release.wait(5)

    resolver = KeyResolver(AuthOptions(required=True), SlowStore())
    first = asyncio.create_task(resolver.resolve("sk-scrimp-x"))
    second = asyncio.create_task(resolver.resolve("sk-scrimp-x"))
    await asyncio.sleep(0.05)
    first.cancel()  # the first caller hangs up while its lookup is under way
    release.set()
    assert await asyncio.wait_for(second, 3) is None
