"""Config validation, `scrimp usage`, `scrimp serve` refusing a broken config, and in-process use."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scrimp.cli import main
from scrimp.gateway.config import ConfigError, load, parse, simulated
from scrimp.inprocess import InProcessGateway
from scrimp.sim.testing import run_simulator

GOOD = {"models": [{"name": "gpt-4o", "provider": "openai", "base_url": "http://x/v1", "api_key": "${TEST_KEY:-none}"}]}


def test_config_errors_name_the_bad_key(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"models\[0\]\.provider"):
        parse({"models": [{"name": "m", "provider": "azure-ish", "base_url": "u"}]})
    with pytest.raises(ConfigError, match=r"models\[0\]: missing required key 'base_url'"):
        parse({"models": [{"name": "m", "provider": "openai"}]})
    with pytest.raises(ConfigError, match=r"upstream\.retries: expected an integer"):
        parse({**GOOD, "upstream": {"retries": "three"}})
    with pytest.raises(ConfigError, match=r"stages\[0\]: unknown stage"):
        parse({**GOOD, "stages": [{"name": "magic"}]})
    with pytest.raises(ConfigError, match="OPENAI_KEY_MISSING is not set"):
        parse({"models": [{**GOOD["models"][0], "api_key": "${OPENAI_KEY_MISSING}"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: a\n   provider: openai\n")
    with pytest.raises(ConfigError, match="line 3"):
        load(bad)
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    assert parse(GOOD).models["gpt-4o"].api_key == "sk-secret"


def test_serve_refuses_a_broken_config(tmp_path):
    bad = tmp_path / "scrimp.yaml"
    bad.write_text("models: []\ncolour: blue\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(bad)])
    assert result.exit_code != 0 and "colour" in result.output


def test_in_process_gateway_with_both_sdks_and_usage_cli(tmp_path):
    ledger = tmp_path / "ledger.db"
    with run_simulator() as (sim_url, _app):
        cfg = simulated(sim_url, stages=[{"name": "ledger", "path": str(ledger)},
                                         {"name": "exact_cache", "path": str(tmp_path / "c.db")}])
        with InProcessGateway(cfg) as gw:
            oa = gw.openai()
            for _ in range(2):
                r = oa.chat.completions.create(model="gpt-4o-mini", temperature=0, max_tokens=10,
                                               messages=[{"role": "user", "content": "hi"}],
                                               extra_headers={"x-scrimp-feature": "chat"})
            assert r.choices[0].message.content
            chunks = list(gw.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10, stream=True,
                                                         messages=[{"role": "user", "content": "hi"}],
                                                         extra_headers={"x-scrimp-feature": "agent"}))
            assert chunks[-1].type == "message_stop"
    result = CliRunner().invoke(main, ["usage", "--db", str(ledger), "--by", "feature", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by = {row["feature"]: row for row in data["rows"]}
    assert by["chat"]["calls"] == 2 and by["chat"]["cache_hits"] == 1 and by["chat"]["saved_usd"] > 0
    assert by["agent"]["calls"] == 1 and data["totals"]["calls"] == 3
    table = CliRunner().invoke(main, ["usage", "--db", str(ledger), "--by", "model"])
    assert "gpt-4o-mini" in table.output and "TOTAL" in table.output
    assert CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "none.db")]).exit_code != 0


async def test_in_process_async(tmp_path):
    with run_simulator() as (sim_url, _app):
        cfg = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "l.db")}])
        async with InProcessGateway(cfg) as gw:
            client = gw.async_openai()
            r = await client.chat.completions.create(model="gpt-4o", max_tokens=5,
                                                     messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content
            await client.close()
