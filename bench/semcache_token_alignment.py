"""Would token-alignment features help the semantic-cache verifier? (They did not; kept to show it.)

BERTScore-like features from MiniLM's token vectors (PyTorch, float): each word's best cosine match on
the other side; idf-weighted and plain precision, recall and F; the worst-matched words; counts of
weakly matched words. Gradient-boosted trees on the cosine plus (a) the verifier's lexical features,
(b) the alignment features, (c) both; trained on the fit+calibration part of bench/semcache_qqp.py's
split (seed 0) and compared on its held-out pairs at exactly 0.5/1/2% false hits, each threshold set on
the held-out pairs themselves (a comparison of features, not a calibrated result).

    .venv/bin/python bench/semcache_token_alignment.py [--data ../shared/data/semcache/qqp_dev.jsonl.gz]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from semcache_qqp import DATA, held_out_split

from scrimp.cache.semantic.normalize import normalize
from scrimp.cache.semantic.pair_features import lexical
from scrimp.cache.semantic.pairs import read_pairs
from scrimp.embedding.embedder import default_model_path


def token_vectors(texts: list[str]) -> tuple[list[np.ndarray], np.ndarray, list[list[int]]]:
    """Per text: unit token vectors (no [CLS]/[SEP]), the unit mean-pooled sentence vector, the token ids."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_path())
    model = AutoModel.from_pretrained(default_model_path()).eval()
    toks: list[np.ndarray] = [np.zeros(0)] * len(texts)
    sent = np.zeros((len(texts), 384), np.float32)
    ids: list[list[int]] = [[]] * len(texts)
    order = np.argsort([len(t) for t in texts])
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), 128), desc="token vectors", file=sys.stderr):
            idx = order[start:start + 128]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            unit = torch.nn.functional.normalize(hidden, dim=-1)
            for j, i in enumerate(idx):
                n = int(enc["attention_mask"][j].sum())
                toks[i] = unit[j, 1:n - 1].numpy()
                sent[i] = pooled[j].numpy()
                ids[i] = enc["input_ids"][j, 1:n - 1].tolist()
    return toks, sent, ids


def alignment(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> list[float]:
    if len(a) == 0 or len(b) == 0:
        return [0.0] * 12
    sims = a @ b.T
    ra, rb = sims.max(1), sims.max(0)  # each token's best match on the other side
    p, r = ra.mean(), rb.mean()
    return [p, r, 2 * p * r / (p + r + 1e-9), (ra * wa).sum() / wa.sum(), (rb * wb).sum() / wb.sum(),
            min(ra.min(), rb.min()), max(ra.min(), rb.min()), (ra < 0.6).sum() + (rb < 0.6).sum(),
            (ra < 0.75).sum() + (rb < 0.75).sum(), min(np.sort(ra)[:2].mean(), np.sort(rb)[:2].mean()),
            ((ra < 0.7) * wa).sum() + ((rb < 0.7) * wb).sum(), ((1 - ra) * wa).max() + ((1 - rb) * wb).max()]


def hit_rate_at(score: np.ndarray, labels: np.ndarray, false_hit: float) -> float:
    negatives = np.sort(score[labels == 0])[::-1]
    return float((score[labels == 1] > negatives[int(false_hit * len(negatives))]).mean())


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    pairs = read_pairs(args.data)
    fit, test = held_out_split(pairs)
    a = [normalize(t) for t in pairs.text_a]
    b = [normalize(t) for t in pairs.text_b]
    y = np.asarray(pairs.labels)
    texts = sorted(set(a) | set(b))
    pos = {t: i for i, t in enumerate(texts)}
    toks, sent, ids = token_vectors(texts)
    df = Counter(i for x in ids for i in set(x))
    idf = [np.asarray([np.log((len(texts) + 1) / (df[i] + 1)) for i in x], np.float32) for x in ids]
    ia, ib = np.asarray([pos[t] for t in a]), np.asarray([pos[t] for t in b])
    cos = np.einsum("ij,ij->i", sent[ia], sent[ib])
    align = np.asarray([alignment(toks[i], toks[j], idf[i], idf[j]) for i, j in zip(ia, ib)], np.float32)
    lex = np.asarray([lexical(x, z) for x, z in zip(a, b)], np.float32)
    print(f"{len(pairs)} pairs, {int(test.sum())} held out; hit rate on duplicates at exactly this false-hit rate")
    print(f"{'features':<34} {'0.5%':>6} {'1%':>6} {'2%':>6}")
    print(f"{'cosine alone':<34} " + " ".join(f"{hit_rate_at(cos[test], y[test], f):>6.1%}" for f in (0.005, 0.01, 0.02)))
    for name, X in (("cosine + lexical (the verifier's)", np.c_[cos, lex]), ("cosine + alignment", np.c_[cos, align]),
                    ("cosine + lexical + alignment", np.c_[cos, lex, align])):
        clf = HistGradientBoostingClassifier(max_iter=400, learning_rate=0.05, l2_regularization=1.0, random_state=0)
        score = clf.fit(X[fit], y[fit]).predict_proba(X[test])[:, 1]
        print(f"{name:<34} " + " ".join(f"{hit_rate_at(score, y[test], f):>6.1%}" for f in (0.005, 0.01, 0.02)))


if __name__ == "__main__":
    main()
