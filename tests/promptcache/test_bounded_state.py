"""The TTL chooser and the cache-buster detector keep per-key state in bounded LRU maps: a stream of distinct
prefixes (a cache buster, many tenants) cannot grow them, and the prefixes in use keep their history."""

from __future__ import annotations

import pytest

from scrimp.canonical import ChatRequest
from scrimp.promptcache.detector import MAX_KEYS as DETECTOR_MAX
from scrimp.promptcache.detector import CacheBusterDetector
from scrimp.promptcache.profiles import Profiles
from scrimp.promptcache.ttl import MAX_KEYS as TTL_MAX
from scrimp.promptcache.ttl import TTLChooser

SONNET = Profiles.load().for_model("anthropic", "claude-sonnet-4-6")
LONG = " ".join(f"rule{i % 30} says" for i in range(700))


def request(system: str) -> ChatRequest:
    return ChatRequest(model="claude-sonnet-4-6", messages=[{"role": "user", "content": [{"type": "text",
                       "text": "question"}]}], system=[{"type": "text", "text": system}], inbound="anthropic")


def test_ttl_chooser_stays_bounded_and_keeps_the_prefixes_in_use():
    now = [0.0]
    chooser = TTLChooser(clock=lambda: now[0], max_keys=100)
    for i in range(20_000):  # a prefix that changes on every request, and one re-used every 20 minutes
        chooser.observe(f"acme/support/claude/{i:016x}")
        if i % 50 == 0:
            chooser.observe("acme/faq/claude/stable")
        now[0] += 24  # 50 requests = 20 minutes
        assert len(chooser) <= 100
    assert len(chooser) == 100
    assert chooser.choose("acme/faq/claude/stable", SONNET) == "1h"  # its 20-minute gaps were all kept
    assert chooser.choose(f"acme/support/claude/{19_999:016x}", SONNET) == "5m"
    # an evicted prefix is forgotten: seen again, it starts over from the default
    old = f"acme/support/claude/{0:016x}"
    assert chooser.expected_cost(old, SONNET) == (0, 0)
    for _ in range(4):
        chooser.observe(old)
        now[0] += 20 * 60
    assert chooser.choose(old, SONNET) == "1h" and len(chooser) == 100


def test_ttl_chooser_default_bound_and_bad_sizes():
    chooser = TTLChooser(clock=lambda: 0.0)
    assert chooser.max_keys == TTL_MAX == 10_000
    for i in range(TTL_MAX + 500):
        chooser.observe(str(i))
    assert len(chooser) == TTL_MAX
    with pytest.raises(ValueError, match="max_keys"):
        TTLChooser(max_keys=0)


def test_detector_stays_bounded_and_still_names_a_buster_on_a_recent_key():
    detector = CacheBusterDetector(max_keys=50)
    base = "You are helpful.\nCurrent time: 2026-11-22T10:15:03Z\n" + LONG
    assert detector.observe("acme/hot", request(base)) is None
    for i in range(2_000):
        detector.observe(f"tenant{i}/chat", request(f"You are assistant number {i}.\n" + LONG))
        if i % 10 == 0:  # the hot feature keeps being seen, with the same prompt
            assert detector.observe("acme/hot", request(base)) is None
        assert len(detector) <= 50
    assert len(detector) == 50
    finding = detector.observe("acme/hot", request(base.replace("10:15:03", "10:16:41")))
    assert finding is not None and finding.kind == "timestamp" and "10:16:41" in finding.example
    # a key pushed out is compared with nothing on its return (no finding), then remembered again
    assert detector.observe("tenant0/chat", request("Changed prompt.\n" + LONG)) is None
    finding = detector.observe("tenant0/chat", request("Changed prompt, session req_8f3a9c2b1d.\n" + LONG))
    assert finding is not None and finding.kind == "request id"


def test_detector_default_bound_and_bad_sizes():
    detector = CacheBusterDetector()
    assert detector.max_keys == DETECTOR_MAX == 1_000
    for i in range(DETECTOR_MAX + 100):
        detector.observe(f"t{i}/f", request("short prompt"))
    assert len(detector) == DETECTOR_MAX
    with pytest.raises(ValueError, match="max_keys"):
        CacheBusterDetector(max_keys=0)
