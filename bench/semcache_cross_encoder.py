"""Experiment, not shipped: would a cross-encoder verifier catch more QQP duplicates at <= 1% false hits?

all-MiniLM-L6-v2 fully fine-tuned as a cross-encoder (both questions in one input, a logit for "same
question"), on CPU, on the same training part as `bench/semcache_qqp.py` (seed 0 split by question groups;
both orders of each pair; BCE; AdamW 4e-5, 10% warm-up then linear decay; batch 32; 64 tokens). Scored
on the calibration and held-out parts as the mean of both orders. Reported on the held-out part:

- the cross-encoder alone, and the shipped decision (verifier trees), and the cosine: hit rate at a
  threshold set on the calibration part for <= 1% false hits (95% bound, as shipped), and the hit rate at
  exactly 1% false hits on the held-out part itself (a ceiling, not a deployable figure);
- the three scores stacked (logistic regression on [logit(verifier), cross-encoder, cosine] fitted on
  one half of the calibration part, threshold calibrated on the other half).

    .venv/bin/python bench/semcache_cross_encoder.py [--epochs 1] [--data ../shared/data/semcache/qqp_dev.jsonl.gz]

One epoch takes about 25 minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from semcache_qqp import DATA, held_out_split

from scrimp.cache.semantic.calibrate import calibrate
from scrimp.cache.semantic.model import load_model
from scrimp.cache.semantic.normalize import normalize
from scrimp.cache.semantic.pairs import Pairs, group_split, read_pairs
from scrimp.cache.semantic.training import pair_scores
from scrimp.embedding.embedder import default_model_path

MAX_TOKENS, BATCH = 64, 32


def fine_tune(fit: Pairs, epochs: float, seed: int = 0):
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    path = str(default_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    a, b = [normalize(t) for t in fit.text_a], [normalize(t) for t in fit.text_b]
    y = fit.labels.astype(np.float32)
    data = [(a[i], b[i], y[i]) for i in range(len(a))] + [(b[i], a[i], y[i]) for i in range(len(a))]
    steps = int(len(data) / BATCH * epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-5, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, (steps - s) / steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rnd = random.Random(seed)
    model.train()
    bar = tqdm(total=steps, desc="fine-tuning", unit="batch")
    step = 0
    while step < steps:
        rnd.shuffle(data)
        for k in range(0, len(data) - BATCH + 1, BATCH):
            if step >= steps:
                break
            batch = data[k:k + BATCH]
            enc = tok([x[0] for x in batch], [x[1] for x in batch], truncation=True, max_length=MAX_TOKENS,
                      padding=True, return_tensors="pt")
            loss = loss_fn(model(**enc).logits.squeeze(-1), torch.tensor([x[2] for x in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return tok, model.eval()


def score(tok, model, pairs: Pairs) -> np.ndarray:
    import torch

    a, b = [normalize(t) for t in pairs.text_a], [normalize(t) for t in pairs.text_b]
    out = []
    with torch.inference_mode():
        for k in range(0, len(a), 128):
            logits = [model(**tok(x[k:k + 128], z[k:k + 128], truncation=True, max_length=MAX_TOKENS, padding=True,
                                  return_tensors="pt")).logits.squeeze(-1) for x, z in ((a, b), (b, a))]
            out.append(((logits[0] + logits[1]) / 2).numpy())
    return np.concatenate(out)


def at_exactly(score_: np.ndarray, y: np.ndarray, rate: float = 0.01) -> float:
    neg = np.sort(score_[y == 0])
    return float((score_[y == 1] > neg[int((1 - rate) * len(neg))]).mean())


def calibrated(cal_score: np.ndarray, cal_y: np.ndarray, test_score: np.ndarray, y: np.ndarray) -> str:
    hit = test_score >= calibrate(cal_score, cal_y, 0.01).threshold
    return f"{hit[y == 1].mean():6.1%} caught at {hit[y == 0].mean():5.2%} false hits"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--epochs", type=float, default=1.0)
    args = ap.parse_args()
    import torch
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(os.cpu_count() or 1)
    pairs = read_pairs(args.data)
    fit_cal, test = held_out_split(pairs)
    fc = pairs.subset(fit_cal)
    fit_mask, cal_mask = group_split(fc, (5 / 7, 2 / 7), seed=0)
    fit, cal, tst = fc.subset(fit_mask), fc.subset(cal_mask), pairs.subset(test)
    t0 = time.perf_counter()
    tok, model = fine_tune(fit, args.epochs)
    train_s = time.perf_counter() - t0
    ce_cal, ce_test = score(tok, model, cal), score(tok, model, tst)
    shipped = load_model(threads=os.cpu_count() or 1)
    cos_cal, ver_cal = pair_scores(shipped, cal, progress=False)
    cos_test, ver_test = pair_scores(shipped, tst, progress=False)
    yc, y = cal.labels, tst.labels

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    X_cal, X_test = np.c_[logit(ver_cal), ce_cal, cos_cal], np.c_[logit(ver_test), ce_test, cos_test]
    half_a, half_b = group_split(cal, (0.5, 0.5), seed=1)
    stack = LogisticRegression().fit(X_cal[half_a], yc[half_a])
    st_b, st_test = stack.decision_function(X_cal[half_b]), stack.decision_function(X_test)
    print(f"{len(fit)} pairs to fine-tune on, {len(cal)} to calibrate, {len(tst)} held out "
          f"({int(y.sum())} duplicates); {args.epochs:g} epoch(s) in {train_s:.0f} s "
          f"on {platform.machine()}, {os.cpu_count()} cores")
    for name, c, t in (("cosine", cos_cal, cos_test), ("shipped verifier", ver_cal, ver_test),
                       ("cross-encoder", ce_cal, ce_test)):
        print(f"{name:28s} calibrated: {calibrated(c, yc, t, y)}; at exactly 1% on held-out: {at_exactly(t, y):.1%}")
    print(f"{'stacked (all three)':28s} calibrated: {calibrated(st_b, yc[half_b], st_test, y)}; "
          f"at exactly 1% on held-out: {at_exactly(st_test, y):.1%}")


if __name__ == "__main__":
    main()
