"""Redaction rules: the defaults (API keys, e-mail addresses), custom regexes and JSON paths."""

from __future__ import annotations

import pytest

from scrimp.requestlog.redact import Redactor, parse_path


@pytest.mark.parametrize("secret", [
    "sk-proj-AbCdEfGhIjKlMnOpQrStUv", "sk-ant-api03-abcdefghijklmnopqrstuv", "sk-scrimp-0123456789abcdef0123",
    "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
])
def test_default_rules_catch_api_keys(secret):
    assert Redactor().text(f"use {secret} please") == "use [REDACTED:api_key] please"


def test_assignments_and_bearer_tokens_keep_their_name():
    r = Redactor()
    assert r.text("api_key=abcd1234efgh5678") == "api_key=[REDACTED:api_key]"
    assert r.text('"password": "hunter2hunter2"') == '"password": "[REDACTED:api_key]"'
    assert r.text("Authorization: Bearer abc.def-ghi_jkl012345") == "Authorization: Bearer [REDACTED:api_key]"


def test_emails_and_ordinary_text():
    r = Redactor()
    assert r.text("write to a.b+c@mail.example.co.uk today") == "write to [REDACTED:email] today"
    assert r.text("the skeleton key is sk-short") == "the skeleton key is sk-short"  # too short to be a key


def test_defaults_can_be_turned_off_and_custom_patterns_added():
    r = Redactor(patterns=[r"\b\d{3}-\d{2}-\d{4}\b"], defaults=False, replacement="<ssn>")
    assert r.text("ssn 123-45-6789 mail x@y.com") == "ssn <ssn> mail x@y.com"


def test_json_paths_replace_whole_values_without_touching_the_input():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "secret one"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "secret two"}]}],
            "metadata": {"email": "x", "plan": "pro"}, "tools": []}
    r = Redactor(json_paths=["messages[*].content[0].text", "$.metadata.email", "missing.path"])
    out = r.body(body)
    assert [m["content"][0]["text"] for m in out["messages"]] == ["[REDACTED]", "[REDACTED]"]
    assert out["metadata"] == {"email": "[REDACTED]", "plan": "pro"}
    assert body["messages"][0]["content"][0]["text"] == "secret one"  # a copy was changed


def test_bad_paths_are_refused():
    assert parse_path("a.b[2].*") == ["a", "b", 2, "*"]
    with pytest.raises(ValueError):
        parse_path("a[x")


def test_bad_rules_are_refused_with_the_config_line(tmp_path):
    from scrimp.gateway.config import load
    from scrimp.options import ConfigError

    config = tmp_path / "scrimp.yaml"
    config.write_text("models: []\nstages:\n  - ledger: {path: l.db}\n  - request_log:\n      features: [faq]\n"
                      "      redact:\n        patterns: ['(unclosed']\n")
    with pytest.raises(ConfigError, match=r"line 7.*request_log\.redact\.patterns\[0\].*not a valid regex"):
        load(config, models_required=False)
    config.write_text("models: []\nstages:\n  - ledger: {path: l.db}\n  - request_log: {features: []}\n")
    with pytest.raises(ConfigError, match=r"features: name the features to log"):
        load(config, models_required=False)
