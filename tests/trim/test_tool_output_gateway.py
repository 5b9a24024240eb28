"""Tool output through the gateway: HTML made text, JSON pruned with a note, repeated log lines collapsed, and
the output of old tool calls masked beyond the last few, each saving under its own lever."""

from __future__ import annotations

import json

import openai
import pytest

HTML = ("<!doctype html><html><head><title>Status</title><style>body{color:red}</style>"
        "<script>var tracking = 'x'.repeat(500);</script></head><body><div class='nav'><ul>"
        + "".join(f"<li><a href='/p{i}'>Page {i}</a></li>" for i in range(40))
        + "</ul></div><p>All systems operational in region eu-west.</p></body></html>")
JSON = json.dumps({"service": "billing", "owner": None, "tags": [], "incidents": [
    {"id": i, "title": f"incident number {i}", "severity": "low", "notes": ""} for i in range(60)]})
LOGS = "\n".join([f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}Z WARN connection to db-1 refused, retrying"
                  for i in range(80)] + ["2026-11-20T10:02:00Z ERROR gave up after 80 attempts"])
FILLER = "\n".join(f"row {i}: value {i * 7} status ok checksum {i * 13}" for i in range(60))

TRIM = {"default": {"tool_output": {"keep_last": 2, "mask_every": 2, "min_tokens": 100, "max_array_items": 5}}}


def agent_messages(outputs):
    msgs = [{"role": "user", "content": "Check the billing service and tell me what is wrong."}]
    for i, out in enumerate(outputs):
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": f"fetch_{i}", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": out})
    return msgs


TOOLS = [{"type": "function", "function": {"name": f"fetch_{i}", "description": "fetch",
                                           "parameters": {"type": "object", "properties": {}}}} for i in range(6)]


@pytest.mark.parametrize("trim_gateway", [(TRIM, False)], indirect=True)
def test_tool_output_is_shrunk_and_old_outputs_masked(trim_gateway):
    gw = trim_gateway
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    outputs = [FILLER, FILLER.replace("ok", "fine"), FILLER.replace("ok", "good"), HTML, JSON, LOGS]
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=10, tools=TOOLS, messages=agent_messages(outputs))
    sent = [m for m in gw.upstream("gpt-4o-mini")[0]["messages"] if m["role"] == "tool"]
    assert len(sent) == 6
    # six outputs, the last two kept whole, the four before masked in steps of two: all four masked
    for old in sent[:3]:
        assert old["content"].startswith("[output of fetch_") and "left out to save tokens" in old["content"]
    html, js, logs = sent[3]["content"], sent[4]["content"], sent[5]["content"]
    # the fourth is old too, but as text it is short enough to be left unmasked
    assert "<" not in html and "All systems operational in region eu-west." in html
    data = json.loads(js)
    assert "owner" not in data and "tags" not in data  # empty fields pruned
    assert len(data["incidents"]) == 6 and data["incidents"][-1] == "... 55 more items omitted (60 in all)"
    assert "[previous line repeated 79 more times]" in logs and "ERROR gave up" in logs

    (decisions,) = gw.rows("SELECT decisions FROM calls")[0]
    trim = json.loads(decisions)["trim"]
    assert trim["masked"] == 4 and trim["mask"] > 0 and trim["tool_output"] > 0
    levers = {lever: usd for lever, usd in gw.rows("SELECT lever, usd FROM savings")}
    # gpt-4o-mini: $0.15 per million input tokens
    assert levers["trim.mask"] == pytest.approx(trim["mask"] * 0.15 / 1e6)
    assert levers["trim.tool_output"] == pytest.approx(trim["tool_output"] * 0.15 / 1e6)


@pytest.mark.parametrize("trim_gateway", [({"default": {"tool_output": {"mask": False, "min_tokens": 100}}}, False)],
                         indirect=True)
def test_html_becomes_text_when_masking_is_off(trim_gateway):
    gw = trim_gateway
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=10, tools=TOOLS, messages=agent_messages([HTML]))
    (tool,) = [m for m in gw.upstream("gpt-4o-mini")[0]["messages"] if m["role"] == "tool"]
    assert "<" not in tool["content"] and "tracking" not in tool["content"]
    assert "All systems operational in region eu-west." in tool["content"] and "Page 39" in tool["content"]


@pytest.mark.parametrize("trim_gateway", [(TRIM, False)], indirect=True)
def test_each_part_shows_as_its_own_lever_in_scrimp_usage(trim_gateway, tmp_path):
    from click.testing import CliRunner

    from scrimp.cli import main

    gw = trim_gateway
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    outputs = [FILLER, FILLER.replace("ok", "fine"), FILLER.replace("ok", "good"), HTML, JSON, LOGS]
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=10, tools=TOOLS, messages=agent_messages(outputs))
    gw.rows("SELECT 1")  # flushed
    result = CliRunner().invoke(main, ["usage", "--db", str(tmp_path / "ledger.db"), "--by", "lever", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["lever"]: r for r in json.loads(result.output)["rows"]}
    assert set(rows) == {"trim.tool_output", "trim.mask"}
    assert all(r["calls"] == 1 and r["saved_usd"] > 0 for r in rows.values())
