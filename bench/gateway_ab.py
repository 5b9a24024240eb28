"""This tree against an earlier revision, side by side: CPU per proxied request and per cache hit.

    .venv/bin/python bench/gateway_ab.py --baseline 1ba6a8d [--rounds 3] [--requests 1000]

The revision is exported (`git archive`) to a temporary directory and run with the same virtual environment,
so the two differ only in scrimp's code. Each round starts both gateways (ledger + exact cache on SQLite, one
uvicorn worker, the same fast upstream) one after the other and measures, per gateway: CPU per proxied request
at a fixed 100 req/s, and CPU per exact-cache hit at a fixed 200 req/s (as bench/gateway_overhead.py does).
Alternating rounds spread the machine's noise over both; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gateway_overhead import BODY, HERE, tree_cpu, wait_ready
from loadgen import build_request, fixed_rate

from scrimp.sim.testing import free_port

ROOT = HERE.parent
SERVE = "import sys; from scrimp.cli import main; sys.argv[0] = 'scrimp'; main()"


def export(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "scrimp"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(code_dir: Path, upstream: int, requests: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "scrimp.yaml"
        cfg.write_text(f"""models:
  - {{name: gpt-4o-mini, provider: openai, base_url: "http://127.0.0.1:{upstream}/v1", api_key: bench}}
stages:
  - {{name: ledger, path: "{tmp}/ledger.db"}}
  - {{name: exact_cache, backend: sqlite, path: "{tmp}/cache.db"}}
""")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(code_dir)}
        proc = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--config", str(cfg), "--port", str(port)],
                                stdout=subprocess.DEVNULL, env=env, cwd=tmp)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
            proxied = build_request("127.0.0.1", port, "/v1/chat/completions", BODY)
            asyncio.run(fixed_rate("127.0.0.1", port, proxied, 200, 200))
            cpu0 = tree_cpu(proc.pid)
            asyncio.run(fixed_rate("127.0.0.1", port, proxied, 100, requests))
            per_request = (tree_cpu(proc.pid) - cpu0) / requests * 1000
            hit = build_request("127.0.0.1", port, "/v1/chat/completions", {**BODY, "temperature": 0})
            asyncio.run(fixed_rate("127.0.0.1", port, hit, 100, 50))
            cpu0 = tree_cpu(proc.pid)
            done = asyncio.run(fixed_rate("127.0.0.1", port, hit, 200, requests))
            per_hit = (tree_cpu(proc.pid) - cpu0) / len(done) * 1000
            return per_request, per_hit
        finally:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="a git revision to compare with (e.g. 1ba6a8d)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), "--port", str(up_port)])
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "this tree": []}
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        with tempfile.TemporaryDirectory() as tmp:
            trees = {"baseline": export(args.baseline, Path(tmp)), "this tree": ROOT}
            for n in range(args.rounds):
                order = ["baseline", "this tree"] if n % 2 == 0 else ["this tree", "baseline"]
                for name in order:
                    results[name].append(measure(trees[name], up_port, args.requests))
                    print(f"  round {n + 1}: {name}: {results[name][-1][0]:.3f} ms per proxied request, "
                          f"{results[name][-1][1]:.3f} ms per hit", flush=True)
    finally:
        upstream.terminate()
    med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for name, rs in results.items()}
    print(f"\nmedians over {args.rounds} rounds (CPU ms; proxied at 100 req/s, hits at 200 req/s)\n")
    print("| | per proxied request | per cache hit |\n|---|---:|---:|")
    for name, (proxied, hit) in med.items():
        label = f"baseline ({args.baseline})" if name == "baseline" else name
        print(f"| {label} | {proxied:.3f} | {hit:.3f} |")
    base, new = med["baseline"], med["this tree"]
    print(f"| ratio (this tree / baseline) | {new[0] / base[0]:.2f} | {new[1] / base[1]:.2f} |")


if __name__ == "__main__":
    main()
