"""Output caps on simulated traffic: a feature learns its cap from 100 answers (the shipped defaults: q95 x 1.25,
at least 50 answers), then 400 other prompts are asked through the gateway with no max_tokens. Records the
learned cap, how many answers were cut at it and continued, that every client answer equals the uncapped answer
(asked of the simulator directly), what the continuations cost again (the lever's negative saving, from the
ledger) against the feature's spend, and the output a budget reserves per call with the cap and without (4096).
Then the stage's own time per request, in process (a canned answer as the upstream, so only the stage counts).

    .venv/bin/python bench/output_caps.py [--learn 100] [--requests 400] [--model gpt-4o-mini]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import openai

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.outputcap.options import OutputCapOptions
from scrimp.outputcap.stage import OutputCapStage
from scrimp.pipeline import Attribution, Call, Reply
from scrimp.sim.testing import run_simulator, serve_app
from scrimp.stage import StageContext


def traffic(args: argparse.Namespace) -> dict:
    with run_simulator() as (sim_url, _), tempfile.TemporaryDirectory() as tmp:
        direct = openai.OpenAI(base_url=sim_url + "/v1", api_key="any")
        ledger = str(Path(tmp) / "ledger.db")
        stages = [{"name": "ledger", "path": ledger}, {"name": "output_cap", "refresh_s": 0}]
        app = create_app(simulated(sim_url, stages=stages))
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="any",
                                   default_headers={"x-scrimp-feature": "bench"})

            def ask(c: openai.OpenAI, p: str):
                return c.chat.completions.create(model=args.model, messages=[{"role": "user", "content": p}])

            for i in range(args.learn):
                ask(client, f"Learning question number {i}: tell me about it")
            stage = next(s for s in app.state.gateway.stages if isinstance(s, OutputCapStage))
            cap = stage.caps["bench"]
            same = 0
            start = time.perf_counter()
            for i in range(args.requests):
                prompt = f"Held-out question number {i}: what should we know?"
                same += ask(client, prompt).choices[0].message.content == ask(direct, prompt).choices[0].message.content
            elapsed = time.perf_counter() - start
            store = app.state.gateway.ledger
            store.flush()
            rows = store.query("SELECT cost_usd, saved_usd, decisions FROM calls ORDER BY ts")[args.learn:]
        decisions = [json.loads(d).get("output_cap", {}) for _, _, d in rows]
        spend = sum(r[0] for r in rows)
        return {"cap": cap, "requests": len(rows), "capped": sum(bool(d) for d in decisions),
                "truncated": sum(bool(d.get("truncated")) for d in decisions),
                "continued": sum(bool(d.get("continued")) for d in decisions),
                "answers_equal_to_uncapped": same, "spend_usd": spend,
                "continuation_input_usd": -sum(r[1] for r in rows),
                "reserved_output_tokens_per_call": {"with_cap": cap, "without": 4096},
                "wall_s": elapsed}


async def stage_time(n: int) -> dict:
    """The stage's time per request, with a learned cap, on a canned answer (no upstream, no database)."""
    ctx = StageContext({}, upstream=None)  # type: ignore[arg-type]
    ctx.seal()
    stage = OutputCapStage(OutputCapOptions(refresh_s=3600), ctx)
    stage.lengths = None
    stage.store()
    stage.caps["bench"] = 300
    stage._last_sync = time.time()
    answer = ChatResponse(id="r", model="m", content=[{"type": "text", "text": "short answer"}],
                          usage=Usage(input=50, output=120))

    async def terminal(call: Call) -> Reply:
        return Reply(response=answer, served_model="m")

    req = ChatRequest(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    times = []
    for _ in range(n):
        call = Call(req, Attribution(feature="bench"))
        t = time.perf_counter()
        await stage.handle(call, terminal)
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return {"p50_us": statistics.median(times), "p99_us": times[int(0.99 * len(times))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learn", type=int, default=100)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()
    out = traffic(args)
    out["stage_time"] = asyncio.run(stage_time(5000))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
