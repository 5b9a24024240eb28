"""Semantic-cache lookup latency: embedding one question + searching a namespace of N entries.

Vectors: real all-MiniLM-L6-v2 embeddings of QQP questions, and past those, noisy copies of them
(renormalised), so the index sees the clustered layout of real questions rather than uniform noise.
Each query is embedded and then searched, timed as one lookup, with BLAS on one thread as in the gateway.
Exact search and HNSW (usearch) run side by side on the same entries and queries; HNSW's recall@1
against exact search is reported with its latency. HNSW graphs are also saved and read back (what a
gateway restart does instead of rebuilding: scrimp/cache/semantic/snapshots.py), timed beside the build.

    .venv/bin/python bench/semcache_latency.py [--sizes 10000,100000,1000000] [--queries 500]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scrimp.blas_threads import serve_with_one_blas_thread
from scrimp.cache.semantic.index import ExactIndex, HnswIndex
from scrimp.cache.semantic.model import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "semcache" / "qqp_dev.jsonl.gz"


def questions(path: Path, limit: int) -> list[str]:
    seen: dict[str, None] = {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            row = json.loads(line)
            seen.setdefault(row["text_a"])
            seen.setdefault(row["text_b"])
            if len(seen) >= limit:
                break
    return list(seen)


def corpus(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    reps = -(-n // len(base))
    out = np.tile(base, (reps, 1))[:n].copy()
    out[len(base):] += rng.normal(0, 0.03, size=(n - len(base), base.shape[1])).astype(np.float32) \
        if n > len(base) else 0
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def save_and_load(index: HnswIndex, probes: np.ndarray) -> tuple[str, str]:
    """Seconds to save the graph and to read it back; the graph read back must answer as the original."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/index.usearch"
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        loaded = HnswIndex.load(path)
        load_s = time.perf_counter() - t
        same = all((index.search(q, 4)[0] == loaded.search(q, 4)[0]).all() for q in probes)
        assert same and len(loaded) == len(index), "the saved graph answers differently"
    return f"{save_s:.1f}", f"{load_s:.1f}"


def blas_effect(model, vecs: np.ndarray, query_texts: list[str]) -> None:
    """Embedding + exact search of 10,000 entries, BLAS on one thread (as served) and with the default pool."""
    from blas_pool import blas_threads, p50_p99_ms, time_each

    index = ExactIndex()
    index.add(np.arange(1, len(vecs) + 1), vecs)
    for threads in (1, None):
        with blas_threads(threads):
            secs = time_each(lambda q: index.search(model.embed([q])[0], 4), query_texts)
        print(f"embedding + exact search of {len(vecs):,} entries, BLAS {'1 thread' if threads else 'default pool'}: "
              f"{p50_p99_ms(secs)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--base", type=int, default=20_000, help="real questions embedded for the corpus")
    ap.add_argument("--exact-max", type=int, default=1_000_000, help="skip exact search above this size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    serve_with_one_blas_thread()  # as the gateway does while serving (scrimp/blas_threads.py)
    model = load_model()
    texts = questions(args.data, args.base + args.queries)
    base_texts, query_texts = texts[:args.base], texts[args.base:args.base + args.queries]
    print(f"embedding {len(base_texts)} questions for the corpus ...", file=sys.stderr)
    base = model.embedder.embed(base_texts, progress=True)

    embed_ms = []
    qvecs = []
    for q in query_texts:  # one at a time, as a lookup does
        t = time.perf_counter()
        qvecs.append(model.embed([q])[0])
        embed_ms.append(time.perf_counter() - t)
    qvecs = np.asarray(qvecs)
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    print(f"embedding one question (ONNX Runtime): p50 {pct(embed_ms, 50):.2f} ms, p99 {pct(embed_ms, 99):.2f} ms")
    blas_effect(model, corpus(base, 10_000, np.random.default_rng(1)), query_texts)
    print(f"{'entries':>9} {'index':>6} {'build s':>8} {'search p50':>11} {'p99':>7} {'embed+search p50':>17} "
          f"{'p99':>7} {'recall@1':>9} {'save s':>7} {'load s':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        vecs = corpus(base, n, rng)
        ids = np.arange(1, n + 1)
        exact_top = None
        results = {}
        for kind in ("exact", "hnsw"):
            if kind == "exact" and n > args.exact_max:
                continue
            t0 = time.perf_counter()
            index = ExactIndex() if kind == "exact" else HnswIndex()
            for start in tqdm(range(0, n, 50_000), desc=f"{kind} {n:,}", leave=False, file=sys.stderr):
                index.add(ids[start:start + 50_000], vecs[start:start + 50_000])
            build = time.perf_counter() - t0
            search_ms, total, tops = [], [], []
            for q in query_texts:  # what a lookup does: embed the question, then search
                t = time.perf_counter()
                qv = model.embed([q])[0]
                t1 = time.perf_counter()
                found, _ = index.search(qv, 4)
                t2 = time.perf_counter()
                search_ms.append(t2 - t1)
                total.append(t2 - t)
                tops.append(found[0] if len(found) else -1)
            tops = np.asarray(tops)
            if kind == "exact":
                exact_top = tops
            recall = float((tops == exact_top).mean()) if exact_top is not None else float("nan")
            results[kind] = (build, search_ms, total, recall)
            save_s = load_s = ""
            if kind == "hnsw":
                save_s, load_s = save_and_load(index, qvecs[:50])
            print(f"{n:>9,} {kind:>6} {build:>8.1f} {pct(search_ms, 50):>9.3f}ms {pct(search_ms, 99):>5.2f}ms "
                  f"{pct(total, 50):>15.2f}ms {pct(total, 99):>5.2f}ms {recall:>9.3f} {save_s:>7} {load_s:>7}",
                  flush=True)
            del index


if __name__ == "__main__":
    main()
