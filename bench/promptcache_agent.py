"""Provider prompt caching on a multi-turn agent workload: with and without scrimp's planner.

    .venv/bin/python bench/promptcache_agent.py [--sessions 8] [--turns 10] [--model claude-sonnet-4-6]

Replays agent sessions (a ~4,800-token system prompt and three tools re-sent on every turn, a conversation that
grows by the model's own replies) through the gateway to the simulator, once with the prompt-cache planner
stage and once without, and prices the input side of every call from the simulator's usage with genai-prices.

"Cacheable" input for a call is what an earlier call already sent (the previous turn's whole prompt, or the
shared system prompt and tools on a session's first turn): the hit ratio is the share of it read from cache.
The optimum is the cheapest possible schedule for the same calls: everything already sent is read (0.1x),
everything that a later call re-sends is written once (1.25x), the rest is plain input (1x).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import anthropic

from scrimp import pricing
from scrimp.canonical import Usage
from scrimp.demo.workload import AGENT_SYSTEM, AGENT_TOOLS
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.tokens import count_tokens, tool_text


def replay(url: str, model: str, sessions: int, turns: int) -> list[list[Usage]]:
    client = anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0)
    out = []
    for s in range(sessions):
        history: list[dict] = []
        usages = []
        for t in range(turns):
            history.append({"role": "user", "content": f"Session {s}, step {t}: check region {t % 7} and report."})
            msg = client.messages.create(model=model, max_tokens=120, system=AGENT_SYSTEM, tools=AGENT_TOOLS,
                                         messages=history, extra_headers={"x-scrimp-feature": "agent"})
            u = msg.usage
            usages.append(Usage(input=u.input_tokens, cache_read=u.cache_read_input_tokens,
                                cache_write_5m=u.cache_creation.ephemeral_5m_input_tokens,
                                cache_write_1h=u.cache_creation.ephemeral_1h_input_tokens))
            history.append({"role": "assistant", "content": msg.content[0].text if msg.content[0].type == "text"
                            else "Done."})
        out.append(usages)
    return out


def input_cost(model: str, usages: list[list[Usage]]) -> float:
    return sum(pricing.cost(model, "anthropic", u) for session in usages for u in session)


def optimum(model: str, usages: list[list[Usage]], stable: int) -> tuple[float, int]:
    """Cheapest input cost for these prompts, and the tokens that could have been read (cacheable)."""
    base = pricing.cost(model, "anthropic", Usage(input=1_000_000)) / 1e6
    read = pricing.cost(model, "anthropic", Usage(cache_read=1_000_000)) / 1e6
    write = pricing.cost(model, "anthropic", Usage(cache_write_5m=1_000_000)) / 1e6
    total, cacheable = 0.0, 0
    for s, session in enumerate(usages):
        sizes = [u.total_input for u in session]
        for t, size in enumerate(sizes):
            seen = sizes[t - 1] if t else (stable if s else 0)
            new = size - seen  # re-sent by the next turn (so worth writing) unless this is the last turn
            total += seen * read + new * (write if t + 1 < len(sizes) else base)
            cacheable += seen
    return total, cacheable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--model", default="claude-sonnet-4-6")
    args = parser.parse_args()
    results = {}
    for label, stages in [("without planner", []), ("with planner", [{"name": "prompt_cache"}])]:
        with run_simulator() as (sim_url, _app), tempfile.TemporaryDirectory() as tmp:
            ledger = [{"name": "ledger", "path": str(Path(tmp) / "ledger.db")}]
            app = create_app(simulated(sim_url, stages=ledger + stages))
            with serve_app(app) as url:
                results[label] = replay(url, args.model, args.sessions, args.turns)
    planned = results["with planner"]
    # What a new session can read from an earlier one: the shared system prompt and tools (same token counter
    # as the simulator's usage).
    stable = count_tokens(AGENT_SYSTEM) + sum(count_tokens(tool_text(t)) for t in AGENT_TOOLS)
    best, cacheable = optimum(args.model, planned, stable)
    read_after_first = sum(u.cache_read for session in planned for u in session)
    print(f"machine: 2 cores, {platform.machine()}, python {platform.python_version()}; "
          f"{args.sessions} sessions x {args.turns} turns on {args.model}\n")
    print("| | input cost $ | hit ratio (cacheable tokens read) | vs optimum |")
    print("|---|---:|---:|---:|")
    for label, usages in results.items():
        cost = input_cost(args.model, usages)
        reads = sum(u.cache_read for session in usages for u in session)
        print(f"| {label} | {cost:.4f} | {100 * reads / cacheable:.1f}% | {100 * (cost / best - 1):+.1f}% |")
    print(f"| optimum | {best:.4f} | 100.0% | – |")
    plain = input_cost(args.model, results["without planner"])
    cost = input_cost(args.model, planned)
    print(f"\nnet input-cost saving with the planner: {100 * (1 - cost / plain):.1f}% "
          f"(best possible {100 * (1 - best / plain):.1f}%); tokens read from cache: {read_after_first}")


if __name__ == "__main__":
    main()
