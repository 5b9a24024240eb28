"""The batch lane under load, and what it saves on the demo's nightly job.

    .venv/bin/python bench/batch_lane.py [--requests 10000] [--clients 200]

One simulator process and one gateway process (`scrimp serve`, SQLite ledger, the batch lane) on loopback; this
process runs the clients: `--clients` concurrent clients each sending deferred chat calls
(`x-scrimp-defer: 1h`) one after the other, each held open until its line's provider batch ends, until
`--requests` are answered. Reported: wall time, the gateway's CPU per request (from /proc), its peak memory
(VmHWM), provider batches submitted and lines per batch, ledger rows. Then the demo's nightly summaries
(scrimp.demo.workload) are priced straight to the provider and through the lane, and once more with every document
sent twice (a job re-run: identical lines in flight are merged)."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scrimp import pricing
from scrimp.batch.gateway_process import GatewayProcess, config_for
from scrimp.demo.workload import build
from scrimp.sim.testing import free_port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_simulator(batch_delay: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "scrimp"), "sim", "serve", "--port", str(port),
                             "--batch-delay", str(batch_delay)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/sim/counters", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not start")


async def load(url: str, requests: int, clients: int) -> tuple[float, int]:
    left = iter(range(requests))
    failures = 0
    errors: dict[str, int] = {}
    bar = tqdm(total=requests, desc="deferred requests", unit="req")
    # idle connections dropped before the server (uvicorn: 5 s) closes them under a request being sent
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        async def client(c: int) -> None:
            nonlocal failures
            for i in left:
                body = {"model": "gpt-4o-mini", "max_tokens": 30,
                        "messages": [{"role": "user", "content": f"Client {c} classifies ticket {i}."}]}
                # a client as the lane's docs advise: an idempotency key, and a retry when the connection drops
                headers = {"x-scrimp-defer": "1h", "idempotency-key": f"bench-{i}"}
                ok = False
                for _attempt in range(5):
                    try:
                        got = await http.post("/v1/chat/completions", json=body, headers=headers)
                        ok = got.status_code == 200 and bool(got.json()["choices"][0]["message"]["content"])
                        break
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                failures += not ok
                bar.update()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    bar.close()
    if errors:
        print("connections dropped and retried with the same idempotency key:", errors)
    return wall, failures


def nightly(gateway_url: str, sim_url: str, ledger: Path, repeat: int) -> tuple[float, float]:
    """(direct cost, cost through the lane) of the demo's nightly summaries, each document sent `repeat` times."""
    calls = [c for c in build() if c.workload == "nightly"] * repeat
    direct_client = openai.OpenAI(base_url=sim_url + "/v1", api_key="sim", max_retries=2)
    direct = 0.0
    for call in calls:
        got = direct_client.chat.completions.create(**call.body)
        u = got.usage
        from scrimp.canonical import Usage

        direct += pricing.cost(call.body["model"], "openai", Usage(input=u.prompt_tokens, output=u.completion_tokens))
    feature = f"nightly-bench-{repeat}"
    lane_client = openai.OpenAI(base_url=gateway_url + "/v1", api_key="sim", max_retries=0, timeout=600)
    with cf.ThreadPoolExecutor(len(calls)) as pool:  # the nightly job: all at once, nobody waiting
        list(pool.map(lambda call: lane_client.chat.completions.create(**call.body, extra_headers={
            "x-scrimp-defer": "24h", "x-scrimp-feature": feature}), calls))
    time.sleep(1.0)  # the ledger writer's window
    with sqlite3.connect(ledger) as conn:
        lane = conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE feature = ?", (feature,)).fetchone()[0]
    return direct, lane


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--max-wait", type=float, default=0.5, help="the lane's max_wait_s")
    ap.add_argument("--batch-delay", type=float, default=0.5, help="the simulator's batch completion delay (s)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-log", help="copy the gateway's log to this file")
    args = ap.parse_args()
    sim, sim_url = start_simulator(args.batch_delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Path(tmp) / "ledger.db"
            lane = {"max_wait_s": args.max_wait, "poll_s": 0.2, "tick_s": 0.1}
            gw = GatewayProcess(config_for(sim_url, {"path": str(ledger)}, lane), Path(tmp))
            gw.start()
            try:
                assert gw.pid is not None
                cpu0 = cpu_seconds(gw.pid)
                wall, failures = asyncio.run(load(gw.url, args.requests, args.clients))
                cpu = cpu_seconds(gw.pid) - cpu0
                rss = peak_rss_mb(gw.pid)
                once = nightly(gw.url, sim_url, ledger, 1)
                twice = nightly(gw.url, sim_url, ledger, 2)
            finally:
                gw.stop()
                if args.keep_log:
                    Path(args.keep_log).write_text(gw.log.read_text())
            with sqlite3.connect(ledger) as conn:
                batches, lines = conn.execute("SELECT COUNT(*), SUM(lines) FROM batch_batches").fetchone()
                rows = conn.execute("SELECT COUNT(*) FROM calls WHERE feature IS NULL").fetchone()[0]
                most = conn.execute("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM calls GROUP BY request_id) AS "
                                    "per_request").fetchone()[0]
    finally:
        sim.terminate()
        sim.wait()
    result = {
        "requests": args.requests, "clients": args.clients, "failures": failures, "wall_s": round(wall, 1),
        "req_per_s": round(args.requests / wall, 1), "gateway_cpu_ms_per_request": round(1000 * cpu / args.requests, 2),
        "gateway_peak_rss_mb": round(rss, 1), "provider_batches": batches, "lines_per_batch": round(lines / batches, 1),
        "ledger_rows": rows, "most_rows_for_one_request": most,
        "nightly_direct_usd": round(once[0], 6), "nightly_lane_usd": round(once[1], 6),
        "nightly_saved": f"{100 * (1 - once[1] / once[0]):.1f}%",
        "nightly_twice_direct_usd": round(twice[0], 6), "nightly_twice_lane_usd": round(twice[1], 6),
        "nightly_twice_saved": f"{100 * (1 - twice[1] / twice[0]):.1f}%",
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:<28}{value}")


if __name__ == "__main__":
    main()
