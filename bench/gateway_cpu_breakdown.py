"""Where a cache hit's CPU goes: the server stack's floor, scrimp's app, and the ledger.

    .venv/bin/python bench/gateway_cpu_breakdown.py [--requests 1000]

In one run, against the same fast upstream (bench/fast_upstream.py), each as its own one-worker process at a
fixed 200 requests/s, CPU per request from /proc:
- a raw ASGI app on the same uvicorn, answering a fixed body with scrimp's response headers (the floor);
- `scrimp serve` with the exact cache alone, and with the ledger in front of it (cache hits);
each also at saturation (32 concurrent clients), where the event loop's wake-ups are shared between requests;
and, in this process with no server or network, scrimp's ASGI app called directly (hits, with and without
the ledger; the ledger writer thread included).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from gateway_overhead import BODY, HERE, tree_cpu, wait_ready
from loadgen import build_request, closed_loop, fixed_rate

from scrimp.sim.testing import free_port

RAW_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"x-scrimp-request-id", b"req_0123456789abcdef01234567"),
        (b"x-scrimp-cache", b"exact"), (b"x-scrimp-model", b"gpt-4o-mini"), (b"x-scrimp-cost-usd", b"0.00000000"),
        (b"x-scrimp-saved-usd", b"0.00000600")]})
    await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-x", "object": "chat.completion", '
                b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure: the answer is 42."}, '
                b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 7}}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def stages(tmp: str, ledger: bool) -> list[dict]:
    return ([{"name": "ledger", "path": f"{tmp}/ledger.db"}] if ledger else []) + [
        {"name": "exact_cache", "path": f"{tmp}/cache.db"}]


def cpu_per_hit(port: int, pid: int, requests: int) -> tuple[float, float]:
    """CPU ms per hit at a fixed 200 requests/s, and at saturation (32 concurrent clients for 3 s)."""
    raw = build_request("127.0.0.1", port, "/v1/chat/completions", {**BODY, "temperature": 0})
    asyncio.run(fixed_rate("127.0.0.1", port, raw, 200, 200))  # warm-up (and the entry stored)
    cpu0 = tree_cpu(pid)
    done = asyncio.run(fixed_rate("127.0.0.1", port, raw, 200, requests))
    paced = (tree_cpu(pid) - cpu0) / len(done) * 1000
    cpu0 = tree_cpu(pid)
    rate = asyncio.run(closed_loop("127.0.0.1", port, raw, 32, 3.0))
    return paced, (tree_cpu(pid) - cpu0) / (rate * 3.0) * 1000


def served(upstream: int, ledger: bool, requests: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "scrimp.yaml"
        lines = [f"  - {orjson.dumps(s).decode()}" for s in stages(tmp, ledger)]
        cfg.write_text(f'models:\n  - {{name: gpt-4o-mini, provider: openai, base_url: "http://127.0.0.1:{upstream}/v1",'
                       f' api_key: bench}}\nstages:\n' + "\n".join(lines) + "\n")
        port = free_port()
        proc = subprocess.Popen([str(Path(sys.executable).with_name("scrimp")), "serve", "--config", str(cfg),
                                 "--port", str(port)], stdout=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
            return cpu_per_hit(port, proc.pid, requests)
        finally:
            proc.terminate()
            proc.wait()


def raw_floor(requests: int) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RAW_APP, str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        return cpu_per_hit(port, proc.pid, requests)
    finally:
        proc.terminate()
        proc.wait()


def in_process(upstream: int, ledger: bool, requests: int) -> float:
    from scrimp.gateway.app import create_app
    from scrimp.gateway.config import parse

    body = orjson.dumps({**BODY, "temperature": 0})
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"authorization", b"Bearer bench")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(parse({"models": [{"name": "gpt-4o-mini", "provider": "openai", "api_key": "bench",
                                            "base_url": f"http://127.0.0.1:{upstream}/v1"}],
                                "stages": stages(tmp, ledger)}))

        async def one() -> None:
            sent: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict) -> None:
                sent.append(message)

            await app({**scope, "state": {}}, receive, send)
            assert sent[0]["status"] == 200, sent

        async def run() -> float:
            gateway = app.state.gateway
            await gateway.start()
            try:
                for _ in range(200):
                    await one()
                t0 = time.process_time()  # this process: the app and the ledger's writer thread
                for _ in range(requests):
                    await one()
                return (time.process_time() - t0) / requests * 1000
            finally:
                await gateway.close()

        return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), "--port", str(up_port)])
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        rows = [("raw ASGI app on uvicorn (the floor)", raw_floor(args.requests)),
                ("scrimp serve: exact cache alone", served(up_port, False, args.requests)),
                ("scrimp serve: ledger + exact cache", served(up_port, True, args.requests)),
                ("scrimp app alone, in process: exact cache", (in_process(up_port, False, args.requests * 3), None)),
                ("scrimp app alone, in process: ledger + exact cache",
                 (in_process(up_port, True, args.requests * 3), None))]
    finally:
        upstream.terminate()
    print(f"\ncache hits, CPU ms per request: {args.requests} at a fixed 200 req/s; at saturation, 32 concurrent "
          "clients for 3 s; in process, back to back\n")
    print("| | CPU ms/hit at 200 req/s (in process: back to back) | CPU ms/hit at saturation |\n|---|---:|---:|")
    for name, (paced, busy) in rows:
        print(f"| {name} | {paced:.3f} | {'-' if busy is None else f'{busy:.3f}'} |")


if __name__ == "__main__":
    main()
