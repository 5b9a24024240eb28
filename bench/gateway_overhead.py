"""What the gateway adds: scrimp vs direct calls vs the LiteLLM proxy, against the same fast upstream.

    .venv/bin/python bench/gateway_overhead.py [--requests 1000] [--no-litellm]

Each proxy runs as its own process with one worker; the upstream (bench/fast_upstream.py) answers in
microseconds; the load generator (bench/loadgen.py) is raw asyncio. All three share this machine's cores, so
read the figures side by side (same run), not as absolutes. LiteLLM is installed by this script into its own
virtual environment (bench/.venv-litellm, or $SCRIMP_BENCH_LITELLM_VENV) on first use, with its default
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import build_request, closed_loop, fixed_rate

from scrimp.sim.testing import free_port

HERE = Path(__file__).parent
LITELLM_VENV = Path(os.environ.get("SCRIMP_BENCH_LITELLM_VENV", HERE / ".venv-litellm"))
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the answer?"}],
        "max_tokens": 50, "temperature": 0.7}
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds used by a process and its children (LiteLLM forks its worker)."""
    total = 0.0
    pids = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.add(int(entry.name))
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def tree_rss_mib(pid: int) -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) != pid and int(stat[1]) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url} not ready after {timeout}s")


def ensure_litellm() -> Path | None:
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print("installing litellm[proxy] into bench/.venv-litellm (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        r = subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=False)
        if r.returncode != 0:
            print("litellm could not be installed; skipping it")
            return None
    return LITELLM_VENV / "bin" / "litellm"


def start_scrimp(upstream: int, tmp: Path) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    cfg = tmp / "scrimp.yaml"
    cfg.write_text(f"""
models:
  - {{name: gpt-4o-mini, provider: openai, base_url: "http://127.0.0.1:{upstream}/v1", api_key: bench}}
stages:
  - {{name: ledger, path: "{tmp}/ledger.db"}}
  - {{name: exact_cache, backend: sqlite, path: "{tmp}/cache.db"}}
""")
    scrimp = Path(sys.executable).with_name("scrimp")
    proc = subprocess.Popen([str(scrimp), "serve", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    return proc, port, wait_ready(f"http://127.0.0.1:{port}/healthz", proc)


def start_litellm(binary: Path, upstream: int, tmp: Path) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: "http://127.0.0.1:{upstream}/v1"
      api_key: bench
""")
    # LiteLLM refuses to start without a master key; the load generator sends this one.
    env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY="sk-benchkey")
    proc = subprocess.Popen([str(binary), "--config", str(cfg), "--port", str(port), "--num_workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc, port, wait_ready(f"http://127.0.0.1:{port}/health/liveliness", proc)


def measure(name: str, port: int, path: str, pid: int | None, args: argparse.Namespace) -> dict[str, float]:
    raw = build_request("127.0.0.1", port, path, BODY)
    raw_stream = build_request("127.0.0.1", port, path, {**BODY, "stream": True})
    asyncio.run(fixed_rate("127.0.0.1", port, raw, 200, 200))  # warm-up
    cpu0 = tree_cpu(pid) if pid else 0.0
    lat = sorted(asyncio.run(fixed_rate("127.0.0.1", port, raw, 100, args.requests)))
    cpu = (tree_cpu(pid) - cpu0) / args.requests * 1000 if pid else 0.0
    slat = sorted(asyncio.run(fixed_rate("127.0.0.1", port, raw_stream, 100, args.requests // 2)))
    rps = asyncio.run(closed_loop("127.0.0.1", port, raw, 32, args.seconds))
    srps = asyncio.run(closed_loop("127.0.0.1", port, raw_stream, 32, args.seconds))
    out = {"p50": statistics.median(lat) * 1e3, "p99": lat[int(len(lat) * 0.99) - 1] * 1e3, "cpu_ms": cpu,
           "rps": rps, "stream_p50": statistics.median(slat) * 1e3,
           "stream_p99": slat[int(len(slat) * 0.99) - 1] * 1e3, "stream_rps": srps}
    print(f"  {name}: done", flush=True)
    return out


def cache_hits(port: int, pid: int, args: argparse.Namespace) -> tuple[float, float]:
    raw = build_request("127.0.0.1", port, "/v1/chat/completions", {**BODY, "temperature": 0})
    asyncio.run(fixed_rate("127.0.0.1", port, raw, 100, 50))
    cpu0 = tree_cpu(pid)
    n = asyncio.run(fixed_rate("127.0.0.1", port, raw, 200, args.requests))
    cpu = (tree_cpu(pid) - cpu0) / len(n) * 1000
    return asyncio.run(closed_loop("127.0.0.1", port, raw, 32, args.seconds)), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per fixed-rate phase (100 req/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each max-throughput phase")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), "--port", str(up_port)])
    procs = [upstream]
    results: dict[str, dict[str, float]] = {}
    extra: dict[str, float] = {}
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        results["direct"] = measure("direct", up_port, "/v1/chat/completions", None, args)
        with tempfile.TemporaryDirectory() as tmp:
            proc, port, startup = start_scrimp(up_port, Path(tmp))
            procs.append(proc)
            results["scrimp"] = measure("scrimp", port, "/v1/chat/completions", proc.pid, args)
            results["scrimp"]["startup_s"] = startup
            extra["hit_rps"], extra["hit_cpu_ms"] = cache_hits(port, proc.pid, args)
            results["scrimp"]["rss_mib"] = tree_rss_mib(proc.pid)
            proc.terminate()
            proc.wait(10)
            binary = None if args.no_litellm else ensure_litellm()
            if binary:
                proc, port, startup = start_litellm(binary, up_port, Path(tmp))
                procs.append(proc)
                results["litellm"] = measure("litellm", port, "/v1/chat/completions", proc.pid, args)
                results["litellm"]["startup_s"] = startup
                results["litellm"]["rss_mib"] = tree_rss_mib(proc.pid)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    report(results, extra, args)


def report(results: dict[str, dict[str, float]], extra: dict[str, float], args: argparse.Namespace) -> None:
    d = results["direct"]
    print(f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, python {platform.python_version()}; "
          f"{args.requests} requests at 100 req/s per latency phase, {args.seconds:.0f}s per throughput phase\n")
    print("| | added p50 ms | added p99 ms | CPU ms/request | max req/s (32 conc.) | stream added p50 ms "
          "| stream added p99 ms | stream req/s | start-up s | RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if name == "direct":
            print(f"| direct (p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms) | – | – | – | {r['rps']:.0f} | – | – "
                  f"| {r['stream_rps']:.0f} | – | – |")
            continue
        print(f"| {name} | {r['p50'] - d['p50']:.2f} | {r['p99'] - d['p99']:.2f} | {r['cpu_ms']:.2f} | "
              f"{r['rps']:.0f} | {r['stream_p50'] - d['stream_p50']:.2f} | {r['stream_p99'] - d['stream_p99']:.2f} | "
              f"{r['stream_rps']:.0f} | {r.get('startup_s', 0):.2f} | {r.get('rss_mib', 0):.0f} |")
    if extra:
        print(f"\nscrimp exact-cache hits: {extra['hit_rps']:.0f} req/s at 32 concurrent, "
              f"{extra['hit_cpu_ms']:.2f} ms CPU per hit")


if __name__ == "__main__":
    main()
