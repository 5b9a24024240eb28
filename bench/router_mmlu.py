"""Learned-router benchmark on MMLU (RouteLLM's data: Mixtral-8x7B as the cheap model, GPT-4 as the strong).

Contaminated prompts (in RouteLLM's router training data) are dropped. For each seed: split in halves,
train on one (features from the prompt text only; not the subject), calibrate the threshold for 95% of
strong quality on the training half's out-of-fold scores, and evaluate on the other half: APGR, CPT(50%),
CPT(80%) beside a random router, the oracle and RouteLLM's published best on MMLU; and whether the
calibrated threshold kept its quality target on the evaluation half. The APGR of each of the router's
three scorers alone is reported beside their blend.

    .venv/bin/python bench/router_mmlu.py [--data ../shared/data/routing/mmlu] [--seeds 5] [--json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scrimp.router import metrics
from scrimp.router.calibrate import calibrate
from scrimp.router.model import COMPONENTS, Router

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing" / "mmlu"
CHEAP, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
ROUTELLM_BEST = {"apgr": 0.603, "cpt50": 0.354}


def load(data: Path) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    contaminated = set()
    with open(data / "contaminated_prompts.jsonl") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                contaminated.add(row.get("eval_prompt") or row.get("prompt") or "")
    prompts, cheap, strong, dropped = [], [], [], 0
    csv.field_size_limit(10**7)
    for path in sorted(data.glob("mmlu_*.csv")):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["prompt"] in contaminated:
                    dropped += 1
                    continue
                prompts.append(row["prompt"])
                cheap.append(row[CHEAP] == "True")
                strong.append(row[STRONG] == "True")
    return prompts, np.asarray(cheap, float), np.asarray(strong, float), dropped


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed's split of n prompts: the training half and the evaluation half (every router bench uses it)."""
    idx = np.random.default_rng(seed).permutation(n)
    return idx[: n // 2], idx[n // 2:]


def features(prompts: list[str]) -> np.ndarray:
    featurizer = Router(CHEAP, STRONG).featurizer  # the embeddings a router trained now would use
    spec = json.dumps(featurizer.spec(), sort_keys=True)
    key = hashlib.sha256(("\x1e".join(prompts) + spec).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SCRIMP_CACHE_DIR", Path.home() / ".cache" / "scrimp")) / f"bench-router-emb-{key}.npy"
    if cache.exists():
        return np.load(cache)
    X = featurizer.embed(prompts, progress=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, X)
    return X


def parser() -> argparse.ArgumentParser:
    """The options every MMLU router bench takes: where the data is and how many seeds (splits) to run."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seeds", type=int, default=5)
    return ap


def decision_latency(router: Router, eval_prompts: list[str]) -> list[str]:
    """One request's routing decision (embedding included), as the gateway makes it: the last seed's router
    read back from its file, one prompt at a time; BLAS on one thread (as served) and with the default pool."""
    import tempfile

    from blas_pool import blas_threads, p50_p99_ms, time_each

    with tempfile.TemporaryDirectory() as tmp:
        router.save(f"{tmp}/r.npz")
        served = Router.load(f"{tmp}/r.npz")
    short = ["How do I reset my password?", "What is 7 plus 5?", "Summarise this paragraph in one line."]
    served.p_cheap_ok(short[:1])  # load the embedder
    out = []
    for threads in (1, None):
        with blas_threads(threads):
            for name, items in ((f"short prompts ({np.mean([len(p) for p in short]):.0f} chars)", short * 100),
                                (f"MMLU prompts ({np.mean([len(p) for p in eval_prompts]):.0f} chars on average)",
                                 eval_prompts)):
                secs = time_each(lambda p: served.p_cheap_ok([p]), items)
                out.append(f"decision, {name}, BLAS {'1 thread' if threads else 'default pool'}: {p50_p99_ms(secs)}")
    return out


def main() -> None:
    ap = parser()
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--latency-prompts", type=int, default=300)
    args = ap.parse_args()
    prompts, cheap, strong, dropped = load(args.data)
    t0 = time.perf_counter()
    X = features(prompts)
    embed_s = time.perf_counter() - t0
    runs = []
    for seed in range(args.seeds):
        tr, te = halves(len(prompts), seed)
        t = time.perf_counter()
        train_prompts, eval_prompts = [prompts[i] for i in tr], [prompts[i] for i in te]
        router = Router(CHEAP, STRONG).fit(train_prompts, cheap[tr], strong[tr], progress=False, embeddings=X[tr])
        fit_s = time.perf_counter() - t
        # calibrate as `scrimp router calibrate` does: the training half, scored out of fold
        cal = calibrate(router.p_cheap_ok(train_prompts, embeddings=X[tr], out_of_fold=True), cheap[tr], strong[tr],
                        args.target)
        p = router.p_cheap_ok(eval_prompts, embeddings=X[te])
        ours = metrics.summary(p, cheap[te], strong[te])
        alone = {name: metrics.summary(-gain, cheap[te], strong[te])["apgr"]  # a scorer estimates the gain
                 for name, gain in zip(COMPONENTS, router.component_scores(eval_prompts, embeddings=X[te]))}
        to_cheap = p >= cal.threshold
        routed_q = float(np.where(to_cheap, cheap[te], strong[te]).mean())
        runs.append({
            "seed": seed, **ours, "fit_s": fit_s, "alone": alone,
            "random": metrics.random_summary(cheap[te], strong[te], seed=seed),
            "oracle": metrics.summary(metrics.oracle_scores(cheap[te], strong[te]), cheap[te], strong[te]),
            "calibrated": {"threshold": cal.threshold, "expected_strong_share": cal.strong_share,
                           "strong_share": float(1 - to_cheap.mean()),
                           "quality_ratio": routed_q / float(strong[te].mean()),
                           "met": routed_q >= args.target * float(strong[te].mean())}})

    def agg(get):
        vals = np.asarray([get(r) for r in runs], float)
        return float(vals.mean()), float(vals.std())

    result = {
        "decision_latency": decision_latency(router, [prompts[i] for i in te[:args.latency_prompts]]),
        "examples": len(prompts), "dropped_contaminated": dropped, "seeds": args.seeds,
        "cheap_quality": float(cheap.mean()), "strong_quality": float(strong.mean()),
        "router": {k: agg(lambda r, k=k: r[k]) for k in ("apgr", "cpt50", "cpt80")},
        "random": {k: agg(lambda r, k=k: r["random"][k]) for k in ("apgr", "cpt50", "cpt80")},
        "oracle": {k: agg(lambda r, k=k: r["oracle"][k]) for k in ("apgr", "cpt50", "cpt80")},
        "calibrated_95": {"strong_share": agg(lambda r: r["calibrated"]["strong_share"]),
                          "quality_ratio": agg(lambda r: r["calibrated"]["quality_ratio"]),
                          "met_on_eval_half": sum(r["calibrated"]["met"] for r in runs)},
        "scorers_alone_apgr": {name: agg(lambda r, n=name: r["alone"][n]) for name in COMPONENTS},
        "routellm_best": ROUTELLM_BEST, "embed_s": embed_s, "fit_s": agg(lambda r: r["fit_s"]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"MMLU: {len(prompts)} prompts ({dropped} contaminated dropped); cheap {cheap.mean():.3f}, "
          f"strong {strong.mean():.3f}; {args.seeds} seeds, train on one half, evaluate on the other")
    print(f"{'router':<22} {'APGR':>12} {'CPT(50%)':>14} {'CPT(80%)':>14}")
    for name, key in (("scrimp learned", "router"), ("random", "random"), ("oracle", "oracle")):
        r = result[key]
        print(f"{name:<22} {r['apgr'][0]:>6.3f} ±{r['apgr'][1]:.3f} {r['cpt50'][0]:>7.1%} ±{r['cpt50'][1]:.1%} "
              f"{r['cpt80'][0]:>7.1%} ±{r['cpt80'][1]:.1%}")
    for name in COMPONENTS:
        a = result["scorers_alone_apgr"][name]
        print(f"{'  its ' + name + ' scorer alone':<22} {a[0]:>6.3f} ±{a[1]:.3f}")
    print(f"{'RouteLLM best (paper)':<22} {ROUTELLM_BEST['apgr']:>6.3f}        {ROUTELLM_BEST['cpt50']:>7.1%}")
    c = result["calibrated_95"]
    print(f"threshold for {args.target:.0%} of strong quality (calibrated on the training half): strong share "
          f"{c['strong_share'][0]:.1%} ±{c['strong_share'][1]:.1%}, quality {c['quality_ratio'][0]:.1%} "
          f"±{c['quality_ratio'][1]:.1%} of strong; target met on {c['met_on_eval_half']}/{args.seeds} "
          "evaluation halves")
    print(f"features {embed_s:.0f} s for {len(prompts)} prompts; fit {result['fit_s'][0]:.1f} s ({result['machine']})")
    for line in result["decision_latency"]:
        print(line)


if __name__ == "__main__":
    main()
