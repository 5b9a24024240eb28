"""The request log's writer and `scrimp audit` at size.

1. Writer: N entries (a short chat request and answer each) submitted to the request log's background writer
   over SQLite and PostgreSQL: the cost of `submit` on the request's path (µs per entry) and the writer's
   throughput (entries/s: serialise, redact, insert), one run each.
2. Audit: a ledger with request log holding W generated weeks of traffic (tests/audit/traffic.py: five features,
   ~600 calls a week, planted waste), then `scrimp audit` over all of it: wall time and peak memory.

    nice -n 10 .venv/bin/python bench/request_log_audit.py [--entries 20000] [--weeks 30]

PostgreSQL: SCRIMP_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test), a schema of its own, dropped
at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scrimp.canonical import ChatRequest, ChatResponse, Usage
from scrimp.ledger.store import PostgresLedger, SQLiteLedger
from scrimp.requestlog.redact import Redactor
from scrimp.requestlog.store import RequestLogStore
from scrimp.requestlog.writer import Limits, Pending, RequestLogWriter

PG_DSN = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def entry(i: int) -> Pending:
    text = f"Customer {i} (mail user{i}@example.com) asks: how do I export my data to CSV for project {i}?"
    req = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
                      system=[{"type": "text", "text": "You are the support assistant. Answer briefly."}],
                      temperature=0, max_tokens=200)
    resp = ChatResponse(id=f"r{i}", model="gpt-4o-mini", usage=Usage(input=40, output=30),
                        content=[{"type": "text", "text": "Go to Settings > Data > Export and choose CSV."}])
    return Pending({"ts": time.time(), "request_id": f"req_{i}", "tenant": f"t{i % 5}", "feature": "support",
                    "status": "ok", "inbound": "openai", "stream": 0}, req, resp)


def writer_run(store, n: int) -> tuple[float, float]:
    writer = RequestLogWriter(RequestLogStore.of_ledger(store), Redactor(), Limits(retention_s=None,
                                                                                     max_rows_per_tenant=None))
    writer.max_queue = n + 10
    writer._queue.maxsize = n + 10
    writer.start()
    items = [entry(i) for i in range(n)]
    t0 = time.perf_counter()
    for item in items:
        writer.submit(item)
    submitted = time.perf_counter() - t0
    writer.flush()
    total = time.perf_counter() - t0
    assert writer.written == n, (writer.written, writer.dropped, writer.failed)
    writer.close()
    return submitted / n * 1e6, n / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--weeks", type=int, default=30)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        us, rate = writer_run(SQLiteLedger(Path(tmp) / "w.db"), args.entries)
        print(f"writer, SQLite:     submit {us:.1f} µs/entry on the request path; {rate:,.0f} entries/s written")
        schema = "scrimp_bench_" + uuid.uuid4().hex[:8]
        try:
            us, rate = writer_run(PostgresLedger(PG_DSN, schema), args.entries)
            print(f"writer, PostgreSQL: submit {us:.1f} µs/entry on the request path; {rate:,.0f} entries/s written")
        finally:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        from tests.audit.traffic import generate

        path = Path(tmp) / "audit.db"
        store = SQLiteLedger(path)
        t0 = time.perf_counter()
        end = datetime.now(UTC)
        for w in range(args.weeks):
            generate(store, end - timedelta(days=7 * w), seed=w)
        store.close()
        (calls,), = SQLiteLedger(path).query("SELECT COUNT(*) FROM calls")
        print(f"generated {calls:,} calls with request log in {time.perf_counter() - t0:.0f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
        cmd = [str(Path(sys.executable).parent / "scrimp"), "audit", "--db", str(path),
               "--since", f"{7 * args.weeks + 1}d", "--json"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"scrimp audit over {calls:,} logged calls: {wall:.1f} s, peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
