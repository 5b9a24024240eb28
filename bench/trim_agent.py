"""An agent loop with long tool outputs, through the gateway to the simulator, the prompt-cache planner on in
both arms: what it costs with the trim stage (shipped defaults) and without.

    nice -n 10 .venv/bin/python bench/trim_agent.py [--sessions 4] [--steps 12] [--model claude-sonnet-4-6]

Each session is a task followed by `steps` tool calls whose results are an HTML page, a JSON listing or a log
(2-6k tokens each), fed back as tool results; the conversation grows by each call and its output. Cost is what
the ledger charged (input with cache reads and writes, output, any summary call), per session and in total.
A third arm runs the same trim with `cache_aware: false` (old outputs masked whenever a step of them is old),
to show what the cache-aware plan avoids. Target: the cost with trimming is never above the cost without, per
session and in total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import anthropic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trim_split import machine

from scrimp.demo.workload import AGENT_SYSTEM
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.sim.testing import run_simulator, serve_app

TOOLS = [{"name": name, "description": f"{name.replace('_', ' ')} for the agent",
          "input_schema": {"type": "object", "properties": {"target": {"type": "string"}}}}
         for name in ("fetch_page", "list_incidents", "read_logs")]


def tool_output(session: int, step: int) -> tuple[str, str]:
    kind = step % 3
    if kind == 0:
        items = "".join(f"<li class='nav-item'><a href='/docs/{session}/{i}'>Section {i} of the manual</a></li>"
                        for i in range(120))
        body = "".join(f"<p>Region {r} reports status nominal for service {session}-{step}.</p>" for r in range(8))
        return "fetch_page", (f"<!doctype html><html><head><title>Status {step}</title><style>.a{{color:red}}"
                              f"</style><script>{'var x = 1;' * 200}</script></head><body><nav><ul>{items}</ul>"
                              f"</nav><main>{body}</main></body></html>")
    if kind == 1:
        return "list_incidents", json.dumps({"service": f"svc-{session}", "cursor": None, "labels": [], "incidents": [
            {"id": f"inc-{step}-{i}", "title": f"latency above threshold in zone {i % 9}", "severity": "low",
             "assignee": None, "comments": [], "opened": f"2026-11-{1 + i % 28:02d}"} for i in range(150)]})
    lines = [f"2026-11-20T10:{i // 60 % 60:02d}:{i % 60:02d}Z WARN upstream db-{session} slow, retrying"
             for i in range(300)]
    return "read_logs", "\n".join(lines + [f"2026-11-20T11:00:00Z ERROR step {step}: gave up"])


def run_session(client: anthropic.Anthropic, model: str, session: int, steps: int) -> None:
    messages: list[dict] = [{"role": "user", "content": f"Session {session}: find why checkout is slow."}]
    for step in range(steps):
        client.messages.create(model=model, max_tokens=60, system=AGENT_SYSTEM, tools=TOOLS, messages=messages,
                               extra_headers={"x-scrimp-feature": "agent", "x-scrimp-user": f"s{session}"})
        name, output = tool_output(session, step)
        call_id = f"toolu_{session}_{step}"
        messages += [{"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name,
                                                        "input": {"target": f"step {step}"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                                   "content": output}]}]


def arm(stages: list[dict], model: str, sessions: int, steps: int) -> dict:
    with run_simulator() as (sim_url, _sim), tempfile.TemporaryDirectory() as tmp:
        ledger = {"name": "ledger", "path": str(Path(tmp) / "ledger.db")}
        app = create_app(simulated(sim_url, stages=[ledger, *stages, {"name": "prompt_cache"}]))
        with serve_app(app) as url:
            client = anthropic.Anthropic(base_url=url, api_key="bench", max_retries=0)
            for s in range(sessions):
                run_session(client, model, s, steps)
            store = app.state.gateway.ledger
            store.flush()
            per = store.query("SELECT user_id, SUM(cost_usd), SUM(input_tokens + cache_read_tokens + "
                              "cache_write_5m_tokens + cache_write_1h_tokens) FROM calls GROUP BY user_id ORDER BY user_id")
            levers = store.query("SELECT lever, kind, SUM(usd) FROM savings GROUP BY lever, kind")
            decisions = [json.loads(d) for (d,) in store.query("SELECT decisions FROM calls")]
    trims = [d["trim"] for d in decisions if "trim" in d]
    return {"calls": len(decisions), "calls_trimmed": len(trims),
            "calls_masking_held_back": sum(1 for t in trims if "held_back" in t),
            "calls_masked": sum(1 for t in trims if t.get("masked")),"per_session": {u: {"cost_usd": round(c, 5), "input_tokens": t} for u, c, t in per},
            "total_usd": round(sum(c for _, c, _ in per), 5), "levers": {f"{lv} {k}": round(v, 5) for lv, k, v in levers}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--model", default="claude-sonnet-4-6")
    args = ap.parse_args()
    without = arm([], args.model, args.sessions, args.steps)
    with_trim = arm([{"name": "trim"}], args.model, args.sessions, args.steps)
    # the same trim blind to the prompt cache: old outputs masked as soon as a step of them is old
    blind = arm([{"name": "trim", "cache_aware": False}], args.model, args.sessions, args.steps)
    never_above = all(with_trim["per_session"][s]["cost_usd"] <= without["per_session"][s]["cost_usd"]
                      for s in without["per_session"])
    print(json.dumps({"machine": machine(), "sessions": args.sessions, "steps": args.steps, "model": args.model,
                      "without_trim": without, "with_trim": with_trim, "with_trim_cache_blind": blind,
                      "saving_usd": round(without["total_usd"] - with_trim["total_usd"], 5),
                      "saving_share": round(1 - with_trim["total_usd"] / without["total_usd"], 4),
                      "never_above_per_session": never_above}, indent=1))


if __name__ == "__main__":
    main()
