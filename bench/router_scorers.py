"""Which scorers the learned router blends, measured: each alone, the blend, and what did not help.

Same data, split and seeds as bench/router_mmlu.py (MMLU, train on one half, evaluate on the other).
Besides the router's own three scorers (kNN on MiniLM embeddings, TF-IDF ridge, lexical additive model)
and their mean rank, two candidate fourth scorers are fitted on the training half (ridge on character
n-grams; ridge on the embeddings) and blended in, and a 2:2:1 weighting is tried. APGR only.

    .venv/bin/python bench/router_scorers.py [--seeds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router_mmlu import features, halves, load, parser

from scrimp.router import metrics
from scrimp.router.model import Router


def ranks(x: np.ndarray) -> np.ndarray:
    return (np.argsort(np.argsort(x)) + 0.5) / len(x)


def main() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    ap = parser()
    args = ap.parse_args()
    prompts, cheap, strong, _ = load(args.data)
    X = features(prompts)
    results: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        tr, te = halves(len(prompts), seed)
        train_prompts, eval_prompts = [prompts[i] for i in tr], [prompts[i] for i in te]
        router = Router("cheap", "strong").fit(train_prompts, cheap[tr], strong[tr], progress=False, embeddings=X[tr])
        knn, text, lexical = router.component_scores(eval_prompts, embeddings=X[te])  # estimated gains
        gain = strong[tr] - cheap[tr]
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                                max_features=200_000)
        char_ridge = Ridge(alpha=30).fit(chars.fit_transform(train_prompts), gain).predict(chars.transform(eval_prompts))
        emb_ridge = Ridge(alpha=10).fit(X[tr], gain).predict(X[te])
        r = {name: ranks(s) for name, s in (("knn", knn), ("text", text), ("lexical", lexical),
                                            ("char", char_ridge), ("emb", emb_ridge))}
        candidates = {
            "kNN alone": r["knn"], "TF-IDF ridge alone": r["text"], "lexical alone": r["lexical"],
            "char n-gram ridge alone": r["char"], "embedding ridge alone": r["emb"],
            "the router (mean rank of 3)": -router.p_cheap_ok(eval_prompts, embeddings=X[te]),
            "kNN + TF-IDF only": (r["knn"] + r["text"]) / 2,
            "3 + char n-gram ridge": (r["knn"] + r["text"] + r["lexical"] + r["char"]) / 4,
            "3 + embedding ridge": (r["knn"] + r["text"] + r["lexical"] + r["emb"]) / 4,
            "3 + both": (r["knn"] + r["text"] + r["lexical"] + r["char"] + r["emb"]) / 5,
            "3 weighted 2:2:1": (2 * r["knn"] + 2 * r["text"] + r["lexical"]) / 5,
        }
        for name, gain_order in candidates.items():  # higher = the strong model adds more
            results.setdefault(name, []).append(metrics.summary(-gain_order, cheap[te], strong[te])["apgr"])
        print(f"seed {seed} done", file=sys.stderr)
    print(f"{'scorer':<30} {'APGR':>14}   ({args.seeds} seeds)")
    for name, vals in results.items():
        print(f"{name:<30} {np.mean(vals):>6.3f} ±{np.std(vals):.3f}")


if __name__ == "__main__":
    main()
