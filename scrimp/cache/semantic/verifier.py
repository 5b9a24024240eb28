"""The second-stage verifier: gradient-boosted trees over pair features (pair_features.py) giving the
probability that two questions are duplicates.

Trained with scikit-learn's HistGradientBoostingClassifier, then exported to plain arrays (npz) and
evaluated here with numpy: the shipped file is data, not a pickle, and does not tie users to the
scikit-learn version it was trained with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scrimp.cache.semantic.pair_features import NAMES


class TreeVerifier:
    def __init__(self, trees: list[dict[str, np.ndarray]], baseline: float, interactions: bool) -> None:
        self.trees = trees
        self.baseline = baseline
        self.interactions = interactions  # whether the features include u*v and |u-v|

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, interactions: bool, max_iter: int = 400, seed: int = 0,
            progress: bool = True) -> TreeVerifier:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=31,
                                               l2_regularization=1.0, random_state=seed,
                                               verbose=0, early_stopping=False)
        model.fit(X, y)
        trees = []
        for (predictor,) in model._predictors:
            n = predictor.nodes
            trees.append({"feature": n["feature_idx"].astype(np.int32), "threshold": n["num_threshold"],
                          "left": n["left"].astype(np.int32), "right": n["right"].astype(np.int32),
                          "leaf": n["is_leaf"].astype(bool), "value": n["value"],
                          "missing_left": n["missing_go_to_left"].astype(bool)})
        return cls(trees, float(np.ravel(model._baseline_prediction)[0]), interactions)

    def _flatten(self) -> None:
        # All trees in one set of arrays, child indexes made global: a row then walks every tree at once,
        # one numpy step per depth level instead of one per tree (a single lookup scores in ~0.1 ms).
        offsets = np.cumsum([0] + [len(t["leaf"]) for t in self.trees[:-1]])
        cat = {k: np.concatenate([t[k] for t in self.trees]) for k in self.trees[0]}
        for k in ("left", "right"):
            cat[k] = np.concatenate([t[k] + o for t, o in zip(self.trees, offsets)]).astype(np.int64)
        self._flat = cat
        self._roots = offsets.astype(np.int64)

    def score(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_flat"):
            self._flatten()
        f = self._flat
        X = np.asarray(X, dtype=np.float64)
        node = np.broadcast_to(self._roots, (len(X), len(self._roots))).copy()
        rows = np.arange(len(X))[:, None]
        while True:
            inner = ~f["leaf"][node]
            if not inner.any():
                break
            x = X[rows, f["feature"][node]]
            go_left = np.where(np.isnan(x), f["missing_left"][node], x <= f["threshold"][node])
            node = np.where(inner, np.where(go_left, f["left"][node], f["right"][node]), node)
        raw = self.baseline + f["value"][node].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {"baseline": np.asarray([self.baseline]),
                                         "interactions": np.asarray([self.interactions]),
                                         "names": np.asarray(NAMES)}
        for i, t in enumerate(self.trees):
            for key, value in t.items():
                arrays[f"t{i}_{key}"] = value
        tmp = Path(str(path) + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> TreeVerifier:
        with np.load(path) as data:
            if list(data["names"]) != NAMES:
                raise ValueError(f"{path}: verifier was trained on other pair features; retrain it")
            count = len({k.split("_")[0] for k in data.files if k.startswith("t")})
            trees = [{key: data[f"t{i}_{key}"] for key in ("feature", "threshold", "left", "right", "leaf", "value",
                                                          "missing_left")} for i in range(count)]
            return cls(trees, float(data["baseline"][0]), bool(data["interactions"][0]))
