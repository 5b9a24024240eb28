"""How much of QQP's "false hit" budget is label noise? A reader's audit of the non-duplicate labels.

At a 1% false-hit target the few non-duplicates a cache may serve are the ones that look most alike, and
reading them shows most are the same question (labelled "not duplicate" by QQP's raters). This script
turns a reader's judgments (bench/audit/reader_calls_semcache.jsonl: the line of the pair in the data file,
a hash of its text so a changed file is refused, and the reader's call: 1 = one answer serves both,
0 = it does not, "unsure") into three figures:

1. the share q of QQP's non-duplicates that are the same question, from a random sample of the held-out
   non-duplicates (seed-0 split of bench/semcache_qqp.py), with a 95% Clopper-Pearson interval;
2. the ceiling it sets: a cache that served every genuine duplicate would show a false-hit rate of about q,
   and one that cannot tell mislabelled pairs from labelled ones (nothing in the text can) keeps at most
   1%/q of its hits to stay at 1%, so it catches at most about 1%/q of the labelled duplicates;
3. what the shipped model's own false hits on the held-out part are, by the reader, at its threshold and at the
   lower one that serves 2% of the labelled non-duplicates.

    .venv/bin/python bench/semcache_label_audit.py [--data ../shared/data/semcache/qqp_dev.jsonl.gz] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from semcache_qqp import DATA, held_out_split

from scrimp.cache.semantic.model import load_model
from scrimp.cache.semantic.pairs import read_pairs
from scrimp.cache.semantic.training import pair_scores

HERE = Path(__file__).resolve().parent
LABELS = HERE / "audit" / "reader_calls_semcache.jsonl"


def pair_hash(a: str, b: str) -> str:
    return hashlib.sha1((a + "\x00" + b).encode()).hexdigest()[:12]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def share(rows: list[dict], unsure_counts: bool) -> tuple[int, int]:
    same = sum(1 for r in rows if r["reader"] == 1 or (unsure_counts and r["reader"] == "unsure"))
    return same, len(rows)


def operating_point(name: str, threshold: float, cos: np.ndarray, score: np.ndarray, labels: np.ndarray,
                    test_idx: np.ndarray, read: dict, model) -> dict:
    hit = model.accepts(cos, score, threshold)
    false_hit_lines = sorted(int(test_idx[j]) + 1 for j in np.flatnonzero(hit & (labels == 0)))
    calls = [read.get(line, "not read") for line in false_hit_lines]
    negatives = int((labels == 0).sum())
    different = calls.count(0)
    return {"name": name, "threshold": float(threshold), "duplicates": int(labels.sum()),
            "hits": int(hit[labels == 1].sum()), "hit_rate": float(hit[labels == 1].mean()),
            "non_duplicates": negatives, "false_hits": len(calls), "false_hit_rate": len(calls) / negatives,
            "reader_same_question": calls.count(1), "reader_unsure": calls.count("unsure"),
            "reader_different": different, "not_read": calls.count("not read"),
            "read_as_different_rate": different / negatives,
            "read_as_different_or_unsure_rate": (different + calls.count("unsure")) / negatives}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pairs = read_pairs(args.data)
    audit = [json.loads(line) for line in args.labels.read_text().splitlines() if line.strip()]
    for r in audit:
        i = r["line"] - 1
        if not 0 <= i < len(pairs) or pair_hash(pairs.text_a[i], pairs.text_b[i]) != r["pair"]:
            sys.exit(f"{args.labels}: line {r['line']} is not the pair that was read; is {args.data} another file?")
        if pairs.labels[i] != 0:
            sys.exit(f"{args.labels}: line {r['line']} is labelled a duplicate in the data; the audit reads non-duplicates")

    random_rows = [r for r in audit if r["sample"] == "random non-duplicate"]
    result: dict = {"random_sample": len(random_rows)}
    for name, unsure in (("strict", False), ("with_unsure", True)):
        k, n = share(random_rows, unsure)
        lo, hi = clopper_pearson(k, n)
        q = k / n
        result[name] = {"same_question": k, "share": q, "ci95": [lo, hi],
                        "ceiling_at_1pct": min(1.0, 0.01 / q) if q else 1.0,
                        "ceiling_at_1pct_optimistic": min(1.0, 0.01 / lo) if lo else 1.0}

    # the shipped model on the held-out part of the benchmark's seed-0 split
    _, test = held_out_split(pairs)
    test_idx = np.flatnonzero(test)
    held = pairs.subset(test)
    model = load_model()
    cos, score = pair_scores(model, held, progress=not args.json)
    negatives = int((held.labels == 0).sum())
    read = {r["line"]: r["reader"] for r in audit if r["sample"] == "false hit"}
    # the shipped threshold, and the lower one at which 2% of the labelled non-duplicates would be served
    eligible_neg = np.sort(score[(cos >= model.floor) & (held.labels == 0)])[::-1]
    two_pct = float(eligible_neg[int(np.ceil(0.02 * negatives)) - 1])
    result["operating_points"] = [
        operating_point(name, t, cos, score, held.labels, test_idx, read, model)
        for name, t in (("shipped threshold", model.threshold), ("2% labelled false hits", two_pct))]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"random sample of {len(random_rows)} held-out QQP non-duplicates, read one by one:")
    for name, label in (("strict", "the same question"), ("with_unsure", "the same question or unsure")):
        r = result[name]
        print(f"  {label}: {r['same_question']} ({r['share']:.1%}, 95% CI {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})"
              f" -> at most ~{r['ceiling_at_1pct']:.0%} of labelled duplicates catchable at 1% false hits"
              f" ({r['ceiling_at_1pct_optimistic']:.0%} at the interval's low end)")
    for op in result["operating_points"]:
        print(f"{op['name']} ({op['threshold']:.3f}) on the held-out part: {op['hit_rate']:.1%} of "
              f"{op['duplicates']} duplicates, {op['false_hits']} false hits ({op['false_hit_rate']:.2%} of "
              f"{op['non_duplicates']})")
        print(f"  the reader found {op['reader_same_question']} of those the same question, {op['reader_unsure']} "
              f"unsure, {op['reader_different']} different"
              + (f", {op['not_read']} not read (re-read them: the model changed)" if op["not_read"] else ""))
        print(f"  answers served to questions the reader found different: {op['read_as_different_rate']:.2%} "
              f"({op['read_as_different_or_unsure_rate']:.2%} counting the unsure ones)")


if __name__ == "__main__":
    main()
