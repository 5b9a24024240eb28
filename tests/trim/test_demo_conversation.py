"""The demo's long conversation: cheaper with the trim stage, the prompt cache on in both runs."""

from __future__ import annotations

from scrimp.demo import conversation
from scrimp.sim.testing import run_simulator


def test_the_long_research_chat_costs_less_with_trim():
    with run_simulator() as (sim_url, _app):
        result = conversation.run(sim_url, progress=False)
    without, with_trim = result["without"], result["with"]
    assert with_trim["cost"] < without["cost"] and with_trim["input_tokens"] < 0.6 * without["input_tokens"]
    assert with_trim["levers"]["trim.chunks"] > 0 and not without["levers"]
    assert result["line"].startswith("long conversation (research chat, 14 turns")
