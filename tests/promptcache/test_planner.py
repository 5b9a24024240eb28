"""Breakpoint planning, TTL choice and the cache-buster detector, on canonical requests."""

from __future__ import annotations

from scrimp.canonical import ChatRequest
from scrimp.promptcache.detector import CacheBusterDetector
from scrimp.promptcache.planner import plan, slots_of
from scrimp.promptcache.profiles import Profiles
from scrimp.promptcache.ttl import TTLChooser

PROFILES = Profiles.load()
SONNET = PROFILES.for_model("anthropic", "claude-sonnet-4-6")
LONG = " ".join(f"rule{i % 30} says" for i in range(700))  # ~1400 tokens
TOOLS = [{"name": f"tool{i}", "description": "does a thing " * 20,
          "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}} for i in range(3)]


def text(t):
    return {"type": "text", "text": t}


def request(system=LONG, turns=1, tools=None, **kw):
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": [text(f"question {i}")]})
        if i < turns - 1:
            messages.append({"role": "assistant", "content": [text(f"answer {i}")]})
    return ChatRequest(model="claude-sonnet-4-6", messages=messages, system=[text(system)] if system else [],
                       tools=list(tools or []), inbound="anthropic", **kw)


def marks(req):
    return [(s.section, s.block["cache_control"].get("ttl", "5m")) for s in slots_of(req) if "cache_control" in s.block]


def test_breakpoints_on_system_and_conversation_end():
    req = request(tools=TOOLS, turns=3)
    result = plan(req, SONNET)
    assert marks(req) == [("system", "5m"), ("messages", "5m")]
    assert "cache_control" in req.messages[-1]["content"][-1]
    assert result.prefix_tokens > result.stable_tokens > 1024


def test_short_prefixes_get_none():
    req = request(system="Be brief.")
    assert plan(req, SONNET).added == [] and marks(req) == []
    haiku = PROFILES.for_model("anthropic", "claude-haiku-4-5")  # 4096-token minimum
    req = request()
    plan(req, haiku)
    assert marks(req) == []


def test_client_breakpoints_are_respected_and_counted():
    system = [text(LONG), {**text(LONG), "cache_control": {"type": "ephemeral"}}]
    req = request(turns=2)
    req.system = system
    req.messages[0]["content"] = [{**text("doc " * 2000), "cache_control": {"type": "ephemeral"}},
                                  {**text("q"), "cache_control": {"type": "ephemeral"}}]
    result = plan(req, SONNET)
    assert result.client == 3
    assert len(marks(req)) == 4  # one more of ours, never beyond 4
    assert req.system[1]["cache_control"] == {"type": "ephemeral"}  # the client's own, untouched
    full = request(turns=2)
    full.system = [{**text(LONG + str(i)), "cache_control": {"type": "ephemeral"}} for i in range(4)]
    assert plan(full, SONNET).added == [] and len(marks(full)) == 4


def test_long_conversations_get_an_intermediate_breakpoint_within_the_lookback():
    req = request(turns=20)  # 39 message blocks after the system prompt
    plan(req, SONNET)
    positions = [i for i, s in enumerate(slots_of(req)) if "cache_control" in s.block]
    assert len(positions) == 3
    assert positions[-1] - positions[-2] == SONNET.lookback_blocks


def test_one_hour_entries_precede_five_minute_ones():
    req = request(turns=2)
    req.messages[0]["content"] = [{**text("q"), "cache_control": {"type": "ephemeral"}}]  # client 5m, early
    req.system = [text(LONG)]
    plan(req, SONNET, stable_ttl="1h")
    ttls = [t for _, t in marks(req)]
    assert ttls == sorted(ttls, key=lambda t: t != "1h")  # every 1h before every 5m


def test_ttl_follows_reuse_intervals():
    now = [0.0]
    chooser = TTLChooser(clock=lambda: now[0])
    for gap, key in [(60, "chatty"), (20 * 60, "hourly"), (3 * 3600, "daily")]:
        for _ in range(5):
            chooser.observe(key)
            now[0] += gap
    assert chooser.choose("chatty", SONNET) == "5m"  # every re-use inside 5 minutes: reads either way
    assert chooser.choose("hourly", SONNET) == "1h"  # 20-minute gaps: 1h turns writes into reads
    assert chooser.choose("daily", SONNET) == "5m"  # beyond an hour: the dearer write never pays
    assert chooser.choose("unseen", SONNET) == "5m"


def test_detector_names_an_injected_timestamp_and_tool_churn():
    detector = CacheBusterDetector()
    base = "You are helpful.\nCurrent time: 2026-11-22T10:15:03Z\n" + LONG
    assert detector.observe("f", request(system=base)) is None
    finding = detector.observe("f", request(system=base.replace("10:15:03", "10:16:41")))
    assert finding.kind == "timestamp" and "10:16:41" in finding.example and finding.tokens_lost > 1000
    finding = detector.observe("g", request(system="x " + LONG, tools=TOOLS))
    finding = detector.observe("g", request(system="x " + LONG, tools=list(reversed(TOOLS))))
    assert finding.kind == "tools reordered"
    shuffled = [{"input_schema": t["input_schema"], "description": t["description"], "name": t["name"]}
                for t in TOOLS]
    assert detector.observe("g", request(system="x " + LONG, tools=TOOLS)).kind == "tools reordered"
    assert detector.observe("g", request(system="x " + LONG, tools=shuffled)).kind == "unstable JSON key order"
    detector.observe("h", request(system="Session id req_8f3a9c2b1d\n" + LONG))
    assert detector.observe("h", request(system="Session id req_11aa22bb33\n" + LONG)).kind == "request id"
