"""Simulator throughput with zero configured latency: requests/s for each wire API, streamed and not.

    .venv/bin/python bench/sim_throughput.py [--requests 2000] [--concurrency 32]

One simulator process (`scrimp sim serve`, one uvicorn worker) on 127.0.0.1, driven by an
httpx.AsyncClient from this process; on a 2-core machine the client takes one core, so the figure is a
lower bound. Later gateway benchmarks use it to show the simulator
is not their bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scrimp.sim.testing import free_port

CASES = {
    "openai chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 64,
                                             "messages": [{"role": "user", "content": "Say something short."}]}),
    "openai chat stream": ("/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 64, "stream": True,
                                                    "messages": [{"role": "user", "content": "Say something."}]}),
    "anthropic messages": ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64,
                                            "messages": [{"role": "user", "content": "Say something short."}]}),
    "anthropic stream": ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                                          "messages": [{"role": "user", "content": "Say something."}]}),
}


async def drive(url: str, path: str, body: dict, n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                r = await client.post(path, json=body, headers={"anthropic-version": "2023-06-01"})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'case':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    port = free_port()
    scrimp = Path(sys.executable).with_name("scrimp")
    proc = subprocess.Popen([str(scrimp), "sim", "serve", "--port", str(port)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/v1/models", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("simulator did not start") from None
                time.sleep(0.1)
        for name, (path, body) in CASES.items():
            asyncio.run(drive(url, path, body, 100, args.concurrency))  # warm-up
            elapsed, lat = asyncio.run(drive(url, path, body, args.requests, args.concurrency))
            lat.sort()
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(f"{name:<22}{args.requests / elapsed:>10.0f}{statistics.median(lat) * 1e3:>10.1f}"
                  f"{p99 * 1e3:>10.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
