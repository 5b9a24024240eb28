"""Experiment, not shipped: does the router rank long prompts better if it also reads their tail?

The embedder reads the first 256 word pieces; 8.6% of MMLU prompts are longer, and their question and
options come last. For those, an embedding of the last ~250 word pieces is either averaged with the
head's (then made unit length again) or used instead of it; prompts that fit are unchanged. Same data,
split and seeds as bench/router_mmlu.py; APGR and CPT(50%) of the router, and APGR of its kNN scorer alone.

    .venv/bin/python bench/router_long_prompts.py [--seeds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router_mmlu import CHEAP, STRONG, features, halves, load, parser

from scrimp.embedding.embedder import default_model_path
from scrimp.embedding.onnx_embedder import MAX_TOKENS
from scrimp.router import metrics
from scrimp.router.model import Router

TAIL_PIECES = MAX_TOKENS - 6  # leaves room for [CLS], [SEP] and a word split at the cut


def tails(texts: list[str]) -> tuple[list[int], list[str]]:
    """Indexes of the texts longer than the embedder's window, and the text of their last TAIL_PIECES pieces."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(default_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    idx, out = [], []
    for i, enc in enumerate(tok.encode_batch(texts)):
        if len(enc.ids) > MAX_TOKENS:
            idx.append(i)
            out.append(texts[i][enc.offsets[len(enc.ids) - 1 - TAIL_PIECES][0]:])  # the last id is [SEP]
    return idx, out


def unit(V: np.ndarray) -> np.ndarray:
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    prompts, cheap, strong, _ = load(args.data)
    X = features(prompts)
    featurizer = Router(CHEAP, STRONG).featurizer
    long_idx, tail_texts = tails([featurizer.embedded_text(p) for p in prompts])
    T = featurizer.embed(tail_texts)
    print(f"{len(long_idx)} of {len(prompts)} prompts ({len(long_idx) / len(prompts):.1%}) exceed "
          f"{MAX_TOKENS} word pieces")
    head_tail, tail_only = X.copy(), X.copy()
    head_tail[long_idx] = unit(X[long_idx] + T)
    tail_only[long_idx] = T
    for name, V in (("head (as shipped)", X), ("head and tail averaged", head_tail), ("tail instead", tail_only)):
        runs = []
        for seed in range(args.seeds):
            tr, te = halves(len(prompts), seed)
            train, held = [prompts[i] for i in tr], [prompts[i] for i in te]
            router = Router(CHEAP, STRONG).fit(train, cheap[tr], strong[tr], progress=False, embeddings=V[tr])
            s = metrics.summary(router.p_cheap_ok(held, embeddings=V[te]), cheap[te], strong[te])
            knn_gain = router.component_scores(held, embeddings=V[te])[0]
            runs.append((s["apgr"], s["cpt50"], metrics.summary(-knn_gain, cheap[te], strong[te])["apgr"]))
        a = np.asarray(runs)
        print(f"{name:<24} APGR {a[:, 0].mean():.3f} ±{a[:, 0].std():.3f}  CPT(50%) {a[:, 1].mean():.1%} "
              f"±{a[:, 1].std():.1%}  kNN alone {a[:, 2].mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
