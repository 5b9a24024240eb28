"""The dashboard over a large ledger: load time of each view, and what the roll-ups cost the ledger writer.

    nice -n 10 .venv/bin/python bench/dashboard_scale.py [--rows 10000000] [--days 30] [--backend both]
        [--dsn postgresql://postgres@127.0.0.1:5432/test] [--repeat 15] [--write-rows 40000]

1. Fills a ledger (SQLite file in a temp dir, or its own PostgreSQL schema, dropped after) with --rows calls over
   --days (20 tenants using 5 of 40 features each, 6 models, cache hits, routes, errors, a saving record per call a
   lever saved on), a day's diurnal swing. Rows are made with numpy and bulk-loaded (executemany / COPY); their
   roll-ups are summed per hour with numpy and then spread and upserted by the writer's own code
   (scrimp.ledger.aggregates.Batch), since feeding 10 million rows one by one through the writer would take an hour.
2. Times each dashboard view through its HTTP endpoint (Starlette, in process): p50 / p95 over --repeat loads.
3. Measures the ledger writer (LedgerStore.write -> flush) on a fresh ledger with roll-ups on and off: rows/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scrimp.ledger.aggregates import LATENCY_BOUNDS_MS, MEASURES, Batch
from scrimp.ledger.schema import NAMES
from scrimp.ledger.store import LedgerStore, PostgresLedger, SQLiteLedger

TENANTS = [f"tenant-{i:02d}" for i in range(20)]
FEATURES = [f"feature-{i:02d}" for i in range(40)]
MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.50, 10.0), ("claude-haiku-4-5", 1.0, 5.0),
          ("claude-sonnet-4-6", 3.0, 15.0), ("gpt-4.1-mini", 0.40, 1.60), ("gpt-4.1", 2.0, 8.0)]
CACHES = ["miss", "exact", "semantic"]
STATUSES = ["ok", "error", "client_cancelled"]
ROUTED = {f"feature-{i:02d}" for i in range(0, 40, 4)}  # a tenth of the features go through the router
_I = {m: i for i, m in enumerate(MEASURES)}


class Plan:
    """Fixed choices: which features each tenant uses, which models each feature asks for."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.tenant_features = np.array([rng.choice(len(FEATURES), 5, replace=False) for _ in TENANTS])
        self.feature_models = np.array([rng.choice(len(MODELS), 2, replace=False) for _ in FEATURES])
        self.tenant_weight = 1 / np.arange(1, len(TENANTS) + 1)  # a few large tenants
        self.tenant_weight /= self.tenant_weight.sum()


def make_hour(rng: np.random.Generator, plan: Plan, hour: int, n: int, first_id: int) -> dict[str, Any]:
    """n calls of one hour, as numpy columns."""
    ts = np.sort(hour * 3600 + rng.random(n) * 3600)
    tenant = rng.choice(len(TENANTS), n, p=plan.tenant_weight)
    feature = plan.tenant_features[tenant, rng.integers(0, 5, n)]
    model = plan.feature_models[feature, (rng.random(n) < 0.3).astype(int)]
    cache = rng.choice(3, n, p=[0.8, 0.12, 0.08])
    status = rng.choice(3, n, p=[0.97, 0.02, 0.01])
    inp = rng.integers(50, 4000, n)
    out = rng.integers(5, 800, n)
    cread = np.where(rng.random(n) < 0.3, rng.integers(1024, 8192, n), 0)
    pin = np.array([m[1] for m in MODELS])[model]
    pout = np.array([m[2] for m in MODELS])[model]
    price = (inp * pin + out * pout + cread * pin / 10) / 1e6
    hit = cache > 0
    routed = np.isin(feature, [FEATURES.index(f) for f in ROUTED]) & ~hit
    cheap = routed & (rng.random(n) < 0.6)
    router_saving = np.where(cheap, price * 3, 0.0)
    cost = np.where(hit, 0.0, price)
    baseline = price + router_saving
    saved = baseline - cost
    latency = np.where(hit, rng.lognormal(3, 0.5, n), rng.lognormal(6.5, 0.7, n))
    lever = np.where(cache == 1, 1, np.where(cache == 2, 2, np.where(cheap, 3, 0)))  # 0 none
    route = np.where(routed, np.where(cheap, 1, 2), 0)  # 0 none, 1 cheap, 2 strong
    return {"ts": ts, "tenant": tenant, "feature": feature, "model": model, "cache": cache, "status": status,
            "inp": inp, "out": out, "cread": cread, "cost": cost, "baseline": baseline, "saved": saved,
            "latency": latency, "lever": lever, "route": route, "first_id": first_id}


LEVERS = ["", "exact_cache", "semantic_cache", "router"]
ROUTES = ["", "cheap", "strong"]


def call_rows(h: dict[str, Any]) -> list[tuple]:
    """The hour's rows in NAMES order, built column by column (a Python loop per row would dominate the fill)."""
    n = len(h["ts"])
    obj = lambda values, idx: np.array(values, dtype=object)[idx].tolist()
    feature = obj(FEATURES, h["feature"])
    cache = obj(CACHES, h["cache"])
    status = obj(STATUSES, h["status"])
    model = obj([m[0] for m in MODELS], h["model"])
    hit = (h["cache"] > 0).tolist()
    route = obj(ROUTES, h["route"])
    decisions = [f'{{"cache":"{c}","route":"{f}:{r}"}}' if r else f'{{"cache":"{c}"}}'
                 for c, f, r in zip(cache, feature, route, strict=True)]
    none, zero = [None] * n, [0] * n
    cols = {
        "ts": h["ts"].tolist(), "request_id": [f"r{h['first_id'] + i:010d}" for i in range(n)],
        "tenant": obj(TENANTS, h["tenant"]), "user_id": none, "feature": feature, "inbound": ["openai"] * n,
        "requested_model": model, "served_model": [None if x else m for x, m in zip(hit, model, strict=True)],
        "provider": ["cache" if x else "openai" for x in hit], "input_tokens": h["inp"].tolist(),
        "output_tokens": h["out"].tolist(), "cache_read_tokens": h["cread"].tolist(),
        "cache_write_5m_tokens": zero, "cache_write_1h_tokens": zero, "reasoning_tokens": zero,
        "cost_usd": h["cost"].tolist(), "baseline_usd": h["baseline"].tolist(), "saved_usd": h["saved"].tolist(),
        "saving_stage": obj([None, *LEVERS[1:]], h["lever"]), "cache": cache, "decisions": decisions,
        "latency_ms": h["latency"].tolist(), "ttft_ms": none, "stream": zero, "status": status,
        "error": ["upstream 500" if x == "error" else None for x in status], "key_id": none,
    }
    return list(zip(*(cols[name] for name in NAMES), strict=True))


def saving_rows(h: dict[str, Any]) -> list[tuple]:
    idx = np.nonzero(h["lever"])[0]
    return [(float(h["ts"][i]), f"r{h['first_id'] + i:010d}", TENANTS[h["tenant"][i]], FEATURES[h["feature"][i]],
             "saving", LEVERS[h["lever"][i]], float(h["saved"][i]), "bench") for i in idx]


def fold(h: dict[str, Any], hour: int) -> Batch:
    """The hour's roll-ups: calls grouped with numpy by everything a dimension reads, then handed to the
    writer's Batch, which spreads each group over its dimensions and scopes."""
    n = len(h["ts"])
    code = h["tenant"]
    for col, size in (("feature", 40), ("model", 6), ("cache", 3), ("status", 3), ("lever", 4), ("route", 3)):
        code = code * size + h[col]
    uniq, inv = np.unique(code, return_inverse=True)
    lat_bucket = np.searchsorted(np.array(LATENCY_BOUNDS_MS), h["latency"], side="left")
    cols = {
        "calls": np.ones(n), "ok": h["status"] == 0, "errors": h["status"] == 1, "cancelled": h["status"] == 2,
        "cost_usd": h["cost"], "baseline_usd": h["baseline"], "saved_usd": h["saved"], "input_tokens": h["inp"],
        "output_tokens": h["out"], "cache_read_tokens": h["cread"], "exact_hits": h["cache"] == 1,
        "semantic_hits": h["cache"] == 2, "prompt_cache_hits": h["cread"] > 0, "latency_ms_sum": h["latency"],
    }
    for b in range(len(LATENCY_BOUNDS_MS)):
        cols[MEASURES[_I["latency_ms_sum"] + 1 + b]] = lat_bucket == b
    sums = np.zeros((len(uniq), len(MEASURES)))
    for name, values in cols.items():
        sums[:, _I[name]] = np.bincount(inv, weights=np.asarray(values, dtype=np.float64), minlength=len(uniq))
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inv[::-1]] = np.arange(n)[::-1]  # a row of each group, to read its labels
    batch = Batch()
    for g, i in enumerate(first):
        route = ROUTES[h["route"][i]]
        model = MODELS[h["model"][i]][0]
        key = ("call", hour, TENANTS[h["tenant"][i]], FEATURES[h["feature"][i]], model,
               CACHES[h["cache"][i]], STATUSES[h["status"][i]], LEVERS[h["lever"][i]],
               f"{FEATURES[h['feature'][i]]}:{route}" if route else None)
        batch._add(key, sums[g].tolist())
    for row in saving_rows(h):
        batch.add("savings", dict(zip(["ts", "request_id", "tenant", "feature", "kind", "lever", "usd", "detail"],
                                      row, strict=True)))
    return batch


CALL_INSERT = f"INSERT INTO calls ({', '.join(NAMES)}) VALUES ({', '.join(['?'] * len(NAMES))})"
SAVING_COLS = "ts, request_id, tenant, feature, kind, lever, usd, detail"


def fill(store: LedgerStore, rows: int, days: int, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    plan = Plan(rng)
    now_hour = int(time.time() // 3600)
    hours = list(range(now_hour - days * 24 + 1, now_hour + 1))
    swing = 1 + 0.6 * np.sin(np.arange(len(hours)) * 2 * np.pi / 24)  # a day's rhythm
    counts = np.floor(swing / swing.sum() * rows).astype(int)
    counts[-1] += rows - counts.sum()
    conn = store.connect()
    store.migrate(conn)
    pg = isinstance(store, PostgresLedger)
    started, first = time.perf_counter(), 0
    with tqdm(total=rows, unit="row", unit_scale=True, desc=f"fill {type(store).__name__}") as bar:
        for hour, n in zip(hours, counts, strict=True):
            h = make_hour(rng, plan, hour, int(n), first)
            first += int(n)
            cur = conn.cursor()
            if pg:
                with cur.copy(f"COPY calls ({', '.join(NAMES)}) FROM STDIN") as copy:
                    for r in call_rows(h):
                        copy.write_row(r)
                with cur.copy(f"COPY savings ({SAVING_COLS}) FROM STDIN") as copy:
                    for r in saving_rows(h):
                        copy.write_row(r)
            else:
                cur.executemany(CALL_INSERT, call_rows(h))
                cur.executemany(f"INSERT INTO savings ({SAVING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", saving_rows(h))
            fold(h, hour).write(cur, store.placeholder)
            conn.commit()
            bar.update(int(n))
    conn.cursor().execute("ANALYZE")
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def views(store: LedgerStore) -> dict[str, str]:
    """Each view the page loads: one overview request, and pages of calls behind a chart."""
    rows = store.query("SELECT ts, request_id FROM calls ORDER BY ts DESC, request_id DESC LIMIT 1 OFFSET 5000")
    deep = f"{rows[0][0]!r},{rows[0][1]}"
    tenant, feature = store.query("SELECT tenant, feature FROM rollups WHERE tenant = 'tenant-01' AND feature <> '' "
                                  "ORDER BY feature LIMIT 1")[0]  # one of the features that tenant uses
    return {
        "overview 24h": "/dashboard/api/overview?since=24h",
        "overview 7d": "/dashboard/api/overview?since=7d",
        "overview 30d": "/dashboard/api/overview?since=30d",
        "overview 7d, one tenant": "/dashboard/api/overview?since=7d&tenant=tenant-00",
        "overview 30d, one tenant + feature": f"/dashboard/api/overview?since=30d&tenant={tenant}&feature={feature}",
        "calls 7d, first page": "/dashboard/api/calls?since=7d",
        "calls 7d, one model": "/dashboard/api/calls?since=7d&dim=model&key=gpt-4.1",
        "calls 7d, a page 5,000 calls deep": f"/dashboard/api/calls?since=7d&after={deep}",
        "calls 30d, a rare tenant's errors": "/dashboard/api/calls?since=30d&tenant=tenant-19&dim=status&key=error",
    }


def time_views(store: LedgerStore, repeat: int) -> dict[str, tuple[float, float, int]]:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from scrimp.dashboard.routes import routes

    client = TestClient(Starlette(routes=routes(store)))
    out = {}
    for name, path in views(store).items():
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = client.get(path)
            samples.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
        body = r.json()
        size = body["totals"]["calls"] if "totals" in body else len(body["calls"])
        samples.sort()
        out[name] = (statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], int(size))
    return out


def write_throughput(make: Any, n: int, seed: int = 2) -> float:
    """Rows per second through the ledger writer (queue -> batch -> commit), rows stamped now."""
    rng = np.random.default_rng(seed)
    plan = Plan(rng)
    h = make_hour(rng, plan, int(time.time() // 3600), n, 0)
    h["ts"] = np.full(n, time.time())
    rows = [dict(zip(NAMES, r, strict=True)) for r in call_rows(h)]
    savings = [dict(zip(SAVING_COLS.split(", "), r, strict=True)) for r in saving_rows(h)]
    by_id = {s["request_id"]: s for s in savings}
    store = make()
    store.start()
    t = time.perf_counter()
    for row in rows:
        store.write(row)
        s = by_id.get(row["request_id"])
        if s is not None:
            store.write(s, table="savings")
    store.flush()
    dt = time.perf_counter() - t
    store.close()
    assert store.failed_rows == 0
    return (len(rows) + len(savings)) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--dsn", default=os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--write-rows", type=int, default=40_000)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{args.rows:,} calls over {args.days} days")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    tmp = tempfile.mkdtemp(prefix="scrimp-dash-")
    for backend in backends:
        schemas: list[str] = []

        def make(rollups: bool = True, backend: str = backend, schemas: list[str] = schemas) -> LedgerStore:
            if backend == "sqlite":
                return SQLiteLedger(Path(tmp) / f"{uuid.uuid4().hex[:8]}.db", rollups=rollups)
            schemas.append(f"scrimp_bench_{uuid.uuid4().hex[:8]}")
            return PostgresLedger(args.dsn, schemas[-1], rollups=rollups)

        try:
            store = make()
            took = fill(store, args.rows, args.days)
            n_rollups = store.query("SELECT COUNT(*) FROM rollups")[0][0]
            print(f"\n## {backend}: filled {args.rows:,} calls in {took:.0f} s; {n_rollups:,} roll-up rows\n")
            print("| view | p50 ms | p95 ms | calls shown / counted |\n|---|---:|---:|---:|")
            for name, (p50, p95, size) in time_views(store, args.repeat).items():
                print(f"| {name} | {p50:.0f} | {p95:.0f} | {size:,} |")
            on = write_throughput(lambda: make(True), args.write_rows)
            off = write_throughput(lambda: make(False), args.write_rows)
            print(f"\nledger writer, {args.write_rows:,} calls + their saving records: {on:,.0f} rows/s with roll-ups, "
                  f"{off:,.0f} rows/s without")
        finally:
            if schemas:
                import psycopg

                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    for schema in schemas:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for f in Path(tmp).glob("*"):
                f.unlink()
    Path(tmp).rmdir()


if __name__ == "__main__":
    main()
