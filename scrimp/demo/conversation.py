"""The demo's long conversation: a research chat whose every user turn carries ten retrieved passages (Anthropic
`document` blocks) and whose history grows turn after turn. Run twice on gateways of its own against the demo's
simulator — the prompt-cache planner alone, then with the trim stage in front of it — and compared from the ledger.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import anthropic
from tqdm import tqdm

from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import serve_app

MODEL = "claude-sonnet-4-6"
TOPICS = ["glacier retreat in the Alps", "lithium battery recycling", "coral reef bleaching", "urban heat islands",
          "offshore wind turbines", "soil carbon in farmland", "river delta subsidence", "wildfire smoke and health",
          "green hydrogen electrolysis", "heat pumps in old houses", "desalination energy use", "peatland drainage"]
TRIM = {"name": "trim", "default": {"enabled": False},
        "features": {"research-chat": {"history": {"summary_model": "claude-haiku-4-5"}}}}


def passage(topic: str, n: int, rng: random.Random) -> str:
    facts = [f"Study {n}.{i} on {topic} measured a change of {rng.randint(2, 60)} percent over {rng.randint(3, 30)} "
             f"years in region {rng.randint(1, 9)}, with the strongest effect in {rng.choice(['spring', 'summer', 'winter'])}."
             for i in range(6)]
    return " ".join(facts)


def turns(n: int = 14, seed: int = 5) -> list[tuple[list[dict[str, Any]], str]]:
    """(ten document blocks, the question) per user turn; two passages are on the question's topic."""
    rng = random.Random(seed)
    out = []
    for t in range(n):
        topic = TOPICS[t % len(TOPICS)]
        others = rng.sample([x for x in TOPICS if x != topic], 8)
        picks = [topic, topic, *others]
        rng.shuffle(picks)
        docs = [{"type": "document", "title": f"{p.title()} ({t}-{i})",
                 "source": {"type": "text", "media_type": "text/plain", "data": passage(p, i, rng)}}
                for i, p in enumerate(picks)]
        out.append((docs, f"What do these studies say about {topic}?"))
    return out


def _chat(url: str, progress: bool, label: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="demo-key", max_retries=2)
    history: list[dict[str, Any]] = []
    for docs, question in tqdm(turns(), desc=label, disable=not progress, leave=False):
        history.append({"role": "user", "content": [*docs, {"type": "text", "text": question}]})
        reply = client.messages.create(model=MODEL, max_tokens=120, messages=history,
                                       extra_headers={"x-scrimp-feature": "research-chat"})
        history.append({"role": "assistant", "content": reply.content[0].text if reply.content else "..."})


def run(sim_url: str, progress: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for arm, extra in (("without", []), ("with", [TRIM])):
        with tempfile.TemporaryDirectory() as tmp:
            stages = [{"name": "ledger", "path": str(Path(tmp) / "ledger.db")}, *extra, {"name": "prompt_cache"}]
            app = create_app(simulated(sim_url, stages=stages))
            with serve_app(app) as url:
                _chat(url, progress, f"long conversation ({arm} trim)")
                store = app.state.gateway.ledger
                store.flush()
                ((cost, tokens),) = store.query(
                    "SELECT SUM(cost_usd), SUM(input_tokens + cache_read_tokens + cache_write_5m_tokens + "
                    "cache_write_1h_tokens) FROM calls")
                levers = dict(store.query("SELECT lever, SUM(usd) FROM savings WHERE lever LIKE 'trim%' GROUP BY lever"))
        result[arm] = {"cost": cost, "input_tokens": tokens, "levers": levers}
    without, with_trim = result["without"], result["with"]
    saved = without["cost"] - with_trim["cost"]
    parts = ", ".join(f"{lever} ${usd:.4f}" for lever, usd in sorted(with_trim["levers"].items()))
    result["saved"] = saved
    result["line"] = (f"long conversation (research chat, {len(turns())} turns of 10 retrieved passages; prompt cache "
                      f"on in both): trim sent {100 * (1 - with_trim['input_tokens'] / without['input_tokens']):.0f}% "
                      f"fewer input tokens, cost ${without['cost']:.4f} -> ${with_trim['cost']:.4f} "
                      f"(saved {100 * saved / without['cost']:.1f}%); the ledger's trim savings, each against the call "
                      f"with no lever at all (no prompt cache either): {parts or 'none'}")
    return result
