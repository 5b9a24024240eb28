"""`scrimp keys create/list/revoke/generate` on SQLite and PostgreSQL, `scrimp usage --by key`, the `auth:`
section's checks, and `scrimp serve` refusing a non-loopback host without auth."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import yaml
from auth_helpers import ADMIN, PG_DSN
from click.testing import CliRunner

from scrimp.auth.keys import KeyStore
from scrimp.cli import main
from scrimp.gateway.config import ConfigError, load, parse

MODELS = [{"name": "gpt-4o-mini", "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}]


def write_config(tmp_path, **top) -> str:
    path = tmp_path / "scrimp.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS, **top}))
    return str(path)


@pytest.fixture(params=["sqlite", "postgres"])
def config(request, tmp_path):
    if request.param == "sqlite":
        yield write_config(tmp_path, stages=[{"ledger": {"path": str(tmp_path / "ledger.db")}}])
        return
    schema = f"scrimp_test_keys_{uuid.uuid4().hex[:10]}"
    yield write_config(tmp_path, stages=[{"ledger": {"dsn": PG_DSN, "schema": schema}}])
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_create_list_revoke(config):
    out = run("keys", "create", "--config", config, "--tenant", "acme", "--name", "billing-bot", "--feature",
              "billing", "--budget-usd", "25", "--period", "month")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("sk-scrimp-") and len(secret) > 40 and secret == secret.strip()
    assert "budget: $25 per month (enforced by the budgets stage" in out
    out2 = run("keys", "create", "--config", config, "--tenant", "platform", "--may-set-tenant")
    other = out2.strip().splitlines()[-1]
    assert other != secret

    # only the hash is stored
    store = KeyStore.of_ledger(_ledger(config))
    try:
        rows = store._execute("SELECT * FROM gateway_keys", fetch="all")
        assert secret not in repr(rows) and hashlib.sha256(secret.encode()).hexdigest() in repr(rows)
    finally:
        store.close()

    listed = json.loads(run("keys", "list", "--config", config, "--json"))["keys"]
    assert [(k["tenant"], k["name"], k["feature"], k["may_set_tenant"], k["budget_usd"], k["period"])
            for k in listed] == [("acme", "billing-bot", "billing", False, 25.0, "month"),
                                 ("platform", None, None, True, None, None)]
    assert all(k["revoked_at"] is None and k["prefix"] == secret[:14] for k in listed[:1])
    table = run("keys", "list", "--config", config)
    assert "billing-bot" in table and secret not in table and other not in table
    assert secret[:14] in table  # the prefix tells keys apart

    acme_id = listed[0]["id"]
    assert "revoked " + acme_id in run("keys", "revoke", acme_id, "--config", config)
    after = json.loads(run("keys", "list", "--config", config, "--json"))["keys"]
    assert after[0]["revoked_at"] is not None and after[1]["revoked_at"] is None
    result = CliRunner().invoke(main, ["keys", "revoke", "key_nope", "--config", config])
    assert result.exit_code != 0 and "no key with id 'key_nope'" in result.output


def _ledger(config_path: str):
    from scrimp.ledger.store import open_store

    section = next(s for s in load(config_path).stages if s["name"] == "ledger")
    return open_store({k: v for k, v in section.items() if k != "name"})


def test_create_refuses_bad_input(tmp_path):
    config = write_config(tmp_path, stages=[{"ledger": {"path": str(tmp_path / "l.db")}}])
    for args, words in [(["--tenant", "acme", "--budget-usd", "5"], "go together"),
                        (["--tenant", " acme"], "printable ASCII"),
                        (["--tenant", "acme", "--period", "week"], "week")]:
        result = CliRunner().invoke(main, ["keys", "create", "--config", config, *args])
        assert result.exit_code != 0 and words in result.output, result.output
    no_ledger = tmp_path / "no-ledger.yaml"
    no_ledger.write_text(yaml.safe_dump({"models": MODELS, "stages": ["prompt_cache"]}))
    result = CliRunner().invoke(main, ["keys", "create", "--config", str(no_ledger), "--tenant", "acme"])
    assert result.exit_code != 0 and "no ledger stage" in result.output
    result = CliRunner().invoke(main, ["keys", "create", "--tenant", "acme"])
    assert result.exit_code != 0 and "--config" in result.output


def test_generate_makes_a_key_for_the_config(tmp_path, monkeypatch):
    out = run("keys", "generate", "--tenant", "acme", "--feature", "chat")
    lines = out.strip().splitlines()
    secret = lines[-1]
    entry = yaml.safe_load(lines[1].strip()[2:])
    assert entry == {"key_sha256": hashlib.sha256(secret.encode()).hexdigest(), "tenant": "acme", "feature": "chat"}
    monkeypatch.setenv("SCRIMP_TEST_KEY", "sk-from-the-environment-0123")
    config = write_config(tmp_path, stages=[{"ledger": {"path": str(tmp_path / "l.db")}}],
                          auth={"required": True, "keys": [entry, {"key": "${SCRIMP_TEST_KEY}", "tenant": "b"}]})
    listed = json.loads(run("keys", "list", "--config", config, "--json"))["keys"]
    assert [(k["tenant"], k["source"]) for k in listed] == [("acme", "config"), ("b", "config")]
    assert "sk-from-the-environment" not in json.dumps(listed).replace(listed[1]["prefix"], "")
    result = CliRunner().invoke(main, ["keys", "revoke", listed[0]["id"], "--config", config])
    assert result.exit_code != 0 and "remove it from auth.keys" in result.output


def test_usage_by_key(tmp_path):
    from scrimp.gateway.config import simulated
    from scrimp.inprocess import InProcessGateway
    from scrimp.sim.testing import run_simulator

    ledger = tmp_path / "ledger.db"
    config = write_config(tmp_path, stages=[{"ledger": {"path": str(ledger)}}])
    key_a = run("keys", "create", "--config", config, "--tenant", "acme", "--name", "web").strip().splitlines()[-1]
    key_b = run("keys", "create", "--config", config, "--tenant", "globex").strip().splitlines()[-1]
    with run_simulator() as (sim_url, _app):
        cfg = simulated(sim_url, stages=[{"name": "ledger", "path": str(ledger)}])
        cfg.auth = parse({"models": MODELS, "auth": {"required": True}}).auth
        with InProcessGateway(cfg) as gw:
            for key, n in ((key_a, 2), (key_b, 1)):
                for i in range(n):
                    gw.openai(api_key=key).chat.completions.create(
                        model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": f"hi {i}"}])
    ids = {k["tenant"]: k["id"] for k in json.loads(run("keys", "list", "--db", str(ledger), "--json"))["keys"]}
    rows = json.loads(run("usage", "--db", str(ledger), "--by", "key", "--json"))["rows"]
    assert {r["key"]: r["calls"] for r in rows} == {ids["acme"]: 2, ids["globex"]: 1}
    assert {r["key"]: r.get("key_name") for r in rows} == {ids["acme"]: "web", ids["globex"]: None}
    assert all(r["cost_usd"] > 0 for r in rows)
    table = run("usage", "--db", str(ledger), "--by", "key")
    assert f"{ids['acme']} web" in table and f"{ids['globex']} globex" in table


def test_the_auth_section_is_checked_with_its_line(tmp_path, monkeypatch):
    path = tmp_path / "scrimp.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS}) + "auth:\n  required: true\n  admin_kee: x\n")
    with pytest.raises(ConfigError, match=r"line 8: auth\.admin_kee: unknown key .*did you mean 'admin_key'"):
        load(path)
    for auth, words in [
        ({"keys": [{"tenant": "a"}]}, "give either 'key'"),
        ({"keys": [{"tenant": "a", "key_sha256": "abc"}]}, "64 hex digits"),
        ({"keys": [{"tenant": "a", "key": "short"}]}, "too short"),
        ({"keys": [{"tenant": "a", "key": "k" * 20, "tenat": "b"}]}, r"keys\[0\]\.tenat: unknown key"),
        ({"protect_metrics": True}, "needs an admin_key"),
        ({"admin_key": "${SCRIMP_NO_SUCH_ADMIN:-}"}, "too short for an admin key"),
        ({"keys": [{"tenant": "a", "key": "k" * 20}, {"tenant": "b", "key": "k" * 20}]}, "the same key"),
        ({"required": "yes"}, "expected true or false"),
    ]:
        with pytest.raises(ConfigError, match=words):
            parse({"models": MODELS, "auth": auth})
    monkeypatch.setenv("SCRIMP_ADMIN_KEY", ADMIN)
    cfg = parse({"models": MODELS, "auth": {"required": True, "admin_key": "${SCRIMP_ADMIN_KEY}"}})
    assert cfg.auth.admin_key == ADMIN and cfg.auth.key_cache_ttl_s == 5.0


def test_serve_refuses_a_non_loopback_host_without_auth(tmp_path, monkeypatch):
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.append(host))
    open_config = write_config(tmp_path, stages=[{"ledger": {"path": str(tmp_path / "l.db")}}])
    for host in ("0.0.0.0", "::", "10.1.2.3", "gateway.internal"):
        result = CliRunner().invoke(main, ["serve", "--config", open_config, "--host", host])
        assert result.exit_code != 0 and f"refusing to serve on {host} without auth" in result.output
        assert "--insecure" in result.output
    result = CliRunner().invoke(main, ["serve", "--simulate", "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "refusing" in result.output
    assert started == []
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert CliRunner().invoke(main, ["serve", "--config", open_config, "--host", host]).exit_code == 0
    result = CliRunner().invoke(main, ["serve", "--config", open_config, "--host", "0.0.0.0", "--insecure"])
    assert result.exit_code == 0 and "open gateway" in result.output
    secured = tmp_path / "secured.yaml"
    secured.write_text(yaml.safe_dump({"models": MODELS, "host": "0.0.0.0", "auth": {"required": True},
                                       "stages": [{"ledger": {"path": str(tmp_path / "l.db")}}]}))
    result = CliRunner().invoke(main, ["serve", "--config", str(secured)])
    assert result.exit_code == 0 and "every request needs a gateway key" in result.output
    assert started == ["127.0.0.1", "::1", "localhost", "127.0.0.2", "0.0.0.0", "0.0.0.0"]
