"""Budgets across replicas: three gateways on loopback sharing Redis (budget state) and PostgreSQL (ledger),
200 concurrent requests against a $0.05 budget. Records the overspend (ledger total over the budget), the
refusals that were not needed (requests refused although the budget, once everything settled, still had room
for their worst case) and the latency the budgets stage adds per request.

    .venv/bin/python bench/budget_overspend.py [--requests 200] [--budget 0.05] [--max-tokens 50]

PostgreSQL: SCRIMP_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test), a schema of its own,
dropped at the end; Redis: SCRIMP_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), a key prefix of its own.
Every request is gpt-4o on the simulator with `max_tokens` set, so its worst case is known; the simulator's
replies (~100 tokens) are mostly cut at `max_tokens`, some are shorter and cost less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from gateway_overhead import wait_ready

from scrimp.sim.testing import free_port

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SCRIMP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "gpt-4o"
BIN = Path(sys.executable).parent


def start_gateway(tmp: Path, name: str, sim_port: int, schema: str, budgets: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"""
models:
  - {{name: {MODEL}, provider: openai, base_url: "http://127.0.0.1:{sim_port}/v1", api_key: sim}}
stages:
  - {{name: ledger, dsn: "{PG_DSN}", schema: "{schema}"}}
{budgets}""")
    proc = subprocess.Popen([str(BIN / "scrimp"), "serve", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc)
    return proc, url


def body(i: int, max_tokens: int) -> dict:
    return {"model": MODEL, "max_tokens": max_tokens, "temperature": 0.7,
            "messages": [{"role": "user", "content": f"Write a short note about topic number {i:04d}"}]}


async def burst(urls: list[str], n: int, max_tokens: int, feature: str) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            r = await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body(i, max_tokens),
                                  headers={"x-scrimp-feature": feature})
            return r.status_code, (time.perf_counter() - t0) * 1000

        return await asyncio.gather(*(one(i) for i in range(n)))


async def sequential(url: str, n: int, max_tokens: int, feature: str) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(n):
            t0 = time.perf_counter()
            r = await client.post(url + "/v1/chat/completions", json=body(i, max_tokens),
                                  headers={"x-scrimp-feature": feature})
            r.raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def ledger_total(schema: str, feature: str, expect: int) -> tuple[float, int, float]:
    """Sum of cost_usd for the feature's calls, once the replicas' writers wrote every row."""
    import psycopg

    deadline = time.time() + 30
    while True:
        with psycopg.connect(PG_DSN) as conn:
            rows, total, worst = conn.execute(
                f'SELECT count(*), COALESCE(sum(cost_usd), 0), COALESCE(max(cost_usd), 0) FROM "{schema}".calls '
                "WHERE feature = %s", (feature,)).fetchone()
        if rows >= expect or time.time() > deadline:
            return float(total), int(rows), float(worst)
        time.sleep(0.2)


def worst_case(max_tokens: int, i: int) -> float:
    from scrimp import pricing
    from scrimp.canonical import ChatRequest, Usage
    from scrimp.tokens import request_input_tokens

    req = ChatRequest(model=MODEL, max_tokens=max_tokens,
                      messages=[{"role": "user", "content": [{"type": "text", "text": body(i, max_tokens)["messages"][0]["content"]}]}])
    return pricing.cost(MODEL, "openai", Usage(input=request_input_tokens(req), output=max_tokens))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--budget", type=float, default=0.05)
    ap.add_argument("--max-tokens", type=int, default=50)
    ap.add_argument("--latency-requests", type=int, default=200)
    args = ap.parse_args()
    run = uuid.uuid4().hex[:8]
    schema, prefix = f"scrimp_bench_budget_{run}", f"scrimp-bench-budget-{run}:"
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sim_port = free_port()
        sim = subprocess.Popen([str(BIN / "scrimp"), "sim", "serve", "--port", str(sim_port)],
                               stdout=subprocess.DEVNULL)
        procs.append(sim)
        try:
            wait_ready(f"http://127.0.0.1:{sim_port}/v1/models", sim)
            budgets = f"""  - name: budgets
    redis_url: "{REDIS_URL}"
    prefix: "{prefix}"
    budgets:
      - {{name: bench, feature: burst, limit_usd: {args.budget}, period: day}}
      - {{name: roomy, feature: latency, limit_usd: 1000, period: day}}
"""
            urls = []
            for k in range(3):
                p, url = start_gateway(tmp, f"replica{k}", sim_port, schema, budgets)
                procs.append(p)
                urls.append(url)
            p, plain = start_gateway(tmp, "plain", sim_port, schema, "")
            procs.append(p)

            asyncio.run(sequential(urls[0], 5, args.max_tokens, "warmup"))
            asyncio.run(sequential(plain, 5, args.max_tokens, "warmup"))
            t0 = time.perf_counter()
            results = asyncio.run(burst(urls, args.requests, args.max_tokens, "burst"))
            wall = time.perf_counter() - t0
            codes = [c for c, _ in results]
            ok, refused = codes.count(200), codes.count(429)
            spent, rows, max_cost = ledger_total(schema, "burst", args.requests)
            worst = max(worst_case(args.max_tokens, i) for i in range(args.requests))
            room = max(0.0, args.budget - spent)
            needless = min(refused, int(room // worst))

            with_budget, without = [], []
            for _ in range(2):  # interleaved halves, so drift in the machine's load hits both alike
                with_budget += asyncio.run(sequential(urls[1], args.latency_requests // 2, args.max_tokens, "latency"))
                without += asyncio.run(sequential(plain, args.latency_requests // 2, args.max_tokens, "latency"))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            import psycopg
            import redis

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            r = redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=prefix + "*"))
            if keys:
                r.delete(*keys)

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1]

    print(f"budget ${args.budget} on {MODEL}, max_tokens {args.max_tokens}: worst case per request ${worst:.6f}, "
          f"highest real cost ${max_cost:.6f}")
    print(f"{args.requests} concurrent requests over 3 replicas in {wall:.2f} s: {ok} answered, {refused} refused "
          f"(429), {args.requests - ok - refused} other; ledger rows {rows}")
    print(f"ledger total ${spent:.6f} of ${args.budget}: overspend ${max(0.0, spent - args.budget):.6f} "
          f"({max(0.0, spent - args.budget) / worst:.2f} worst-case requests); room left ${room:.6f}")
    print(f"refusals not needed (room left for their worst case once all settled): {needless}")
    print(f"sequential latency, {len(with_budget)} requests each: with budgets p50 {statistics.median(with_budget):.2f} ms "
          f"p95 {q(with_budget, 95):.2f} ms; without p50 {statistics.median(without):.2f} ms p95 {q(without, 95):.2f} ms; "
          f"added p50 {statistics.median(with_budget) - statistics.median(without):+.2f} ms")


if __name__ == "__main__":
    main()
