"""How much labelled data the learned router needs: APGR and CPT(50%) against the number of training prompts.

Same data, split and seeds as bench/router_mmlu.py (MMLU, contaminated prompts dropped, halves): the
router is trained on the first N prompts of the training half, for N doubling up to the whole half, and
always evaluated on the whole evaluation half. The answer to "how many shadow samples before a route's
router is worth training", and to whether more data of the same kind would lift it.

    .venv/bin/python bench/router_learning_curve.py [--seeds 5] [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router_mmlu import features, halves, load, parser

from scrimp.router import metrics
from scrimp.router.model import Router


def main() -> None:
    from tqdm import tqdm

    ap = parser()
    ap.add_argument("--smallest", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prompts, cheap, strong, _ = load(args.data)
    X = features(prompts)
    half = len(prompts) // 2
    sizes = []
    n = half
    while n >= args.smallest:
        sizes.insert(0, n)
        n //= 2
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    with tqdm(total=args.seeds * len(sizes), desc="training routers", disable=args.json) as bar:
        for seed in range(args.seeds):
            tr, te = halves(len(prompts), seed)
            eval_prompts = [prompts[i] for i in te]
            for n in sizes:
                sub = tr[:n]
                router = Router("cheap", "strong").fit([prompts[i] for i in sub], cheap[sub], strong[sub],
                                                       progress=False, embeddings=X[sub])
                p = router.p_cheap_ok(eval_prompts, embeddings=X[te])
                rows[n].append(metrics.summary(p, cheap[te], strong[te]))
                bar.update()
    result = {str(n): {k: [float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))]
                       for k in ("apgr", "cpt50", "cpt80")} for n, rs in rows.items()}
    if args.json:
        print(json.dumps({"seeds": args.seeds, "by_training_prompts": result}, indent=2))
        return
    print(f"{'training prompts':>16}  {'APGR':>14}  {'CPT(50%)':>14}  {'CPT(80%)':>14}   ({args.seeds} seeds)")
    for n, r in result.items():
        print(f"{int(n):>16,}  {r['apgr'][0]:>7.3f} ±{r['apgr'][1]:.3f}  {r['cpt50'][0]:>7.1%} ±{r['cpt50'][1]:.1%}"
              f"  {r['cpt80'][0]:>7.1%} ±{r['cpt80'][1]:.1%}")


if __name__ == "__main__":
    main()
