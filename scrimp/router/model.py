"""The learned router: p(the cheap model's answer is good enough) for a prompt.

Three small scorers each estimate the expected gain of the strong model (strong score - cheap score):

- `knn`: the prompt's 100 most similar training prompts (MiniLM cosine) vote with their measured gain,
  weighted by similarity: what kind of request this is.
- `text`: ridge regression on the prompt's TF-IDF words and word pairs: which words make it hard.
- `lexical`: an additive model (quantile bins + ridge) on the lexical features of `features.py`: how it is
  put (length, numbers, math, code, negations...).

Each score is turned into its rank among the training prompts' out-of-fold scores; the mean rank orders
prompts (measured on MMLU: better than each scorer alone and than adding a fourth; docs/routing.md), and an
isotonic map fitted on the out-of-fold ranks turns it into p_cheap_ok = P(cheap score >= strong score).
Every part is a few arrays, saved in one .npz with a JSON header (no pickled code). Out-of-fold
p_cheap_ok of the training prompts is kept, so calibrating on the training data is honest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from scrimp.router.features import LEXICAL, Featurizer, lexical_matrix

KIND, VERSION = "scrimp-router", 2
SAME_TEXT = 0.99999  # cosine at which two prompts are the same text (left out of their own vote)
COMPONENTS = ("knn", "text", "lexical")
_QUANTILES = 1001  # resolution of each scorer's rank table


def prompt_hashes(prompts: list[str]) -> np.ndarray:
    return np.asarray([int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(), "little")
                       for p in prompts], dtype=np.uint64)


# -- the three scorers ------------------------------------------------------------------------------------

def _knn(Q: np.ndarray, V: np.ndarray, gains: np.ndarray, k: int, leave_same_out: bool = False,
         chunk: int = 1024) -> np.ndarray:
    out = np.empty(len(Q))
    for start in range(0, len(Q), chunk):
        S = Q[start:start + chunk] @ V.T
        if leave_same_out:  # scoring training prompts: their own (and identical) prompts do not vote
            S[S >= SAME_TEXT] = -np.inf
        kk = max(1, min(k, S.shape[1] - (1 if leave_same_out else 0)))
        top = np.argpartition(-S, kk - 1, axis=1)[:, :kk] if kk < S.shape[1] else np.argsort(-S, axis=1)
        w = np.maximum(np.take_along_axis(S, top, 1), 0.0) + 1e-6  # -inf (left out) weighs ~nothing
        out[start:start + chunk] = (gains[top] * w).sum(1) / w.sum(1)
    return out


class _Text:
    """Ridge on sublinear TF-IDF of words and word pairs; stored as terms, idf and weights."""

    NGRAMS = (1, 2)

    def __init__(self, terms: list[str], idf: np.ndarray, coef: np.ndarray, intercept: float) -> None:
        self.terms, self.idf, self.coef, self.intercept = list(terms), idf, coef, float(intercept)
        self._counter = None

    @classmethod
    def fit(cls, prompts: list[str], y: np.ndarray, alpha: float) -> _Text:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge

        min_df = 3 if len(prompts) >= 200 else 1  # tiny data sets: every word counts
        vec = TfidfVectorizer(ngram_range=cls.NGRAMS, min_df=min_df, sublinear_tf=True, max_features=50_000)
        try:
            X = vec.fit_transform(prompts)
        except ValueError:  # no word at all (e.g. prompts of digits only): a constant scorer
            return cls([], np.zeros(0), np.zeros(0), float(np.mean(y)))
        terms = [t for t, _ in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])]
        m = Ridge(alpha=alpha).fit(X, y)
        return cls(terms, vec.idf_.astype(np.float32), m.coef_.astype(np.float32), float(m.intercept_))

    def matrix(self, prompts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer

        if self._counter is None:
            self._counter = CountVectorizer(vocabulary=self.terms, ngram_range=self.NGRAMS)
        X = self._counter.transform(prompts).astype(np.float64)
        X.data = (1.0 + np.log(X.data)) * self.idf[X.indices]  # what TfidfVectorizer(sublinear_tf) does
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        X = X.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]).tocsr()
        return X

    def predict(self, prompts: list[str]) -> np.ndarray:
        if not self.terms:
            return np.full(len(prompts), self.intercept)
        return self.matrix(prompts) @ self.coef + self.intercept


class _Lexical:
    """Additive model: each lexical feature cut at its training deciles, one weight per bin (ridge)."""

    def __init__(self, edges: list[np.ndarray], coef: np.ndarray, intercept: float) -> None:
        self.edges, self.coef, self.intercept = edges, coef, float(intercept)

    def _onehot(self, L: np.ndarray) -> np.ndarray:
        cols = []
        for j, e in enumerate(self.edges):
            b = np.searchsorted(e, L[:, j], side="right")
            cols.append(np.eye(len(e) + 1, dtype=np.float32)[b])
        return np.hstack(cols)

    @classmethod
    def fit(cls, L: np.ndarray, y: np.ndarray, alpha: float) -> _Lexical:
        from sklearn.linear_model import Ridge

        qs = np.linspace(0.1, 0.9, 9)
        edges = [np.unique(np.quantile(L[:, j], qs)).astype(np.float32) for j in range(L.shape[1])]
        m = cls(edges, np.zeros(0), 0.0)
        r = Ridge(alpha=alpha).fit(m._onehot(L), y)
        m.coef, m.intercept = r.coef_.astype(np.float32), float(r.intercept_)
        return m

    def predict(self, L: np.ndarray) -> np.ndarray:
        return self._onehot(L) @ self.coef + self.intercept


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), max(2, min(k, n)))


def _rank(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Where x falls among the training prompts' out-of-fold scores (0..1)."""
    lo = np.searchsorted(table, x, side="left")
    hi = np.searchsorted(table, x, side="right")
    return (lo + hi) / (2.0 * len(table))


# -- the router ------------------------------------------------------------------------------------------------

class Router:
    def __init__(self, cheap: str, strong: str, k: int = 100, text_alpha: float = 30.0,
                 lexical_alpha: float = 30.0, folds: int = 5, seed: int = 0) -> None:
        self.cheap, self.strong = cheap, strong
        self.k, self.text_alpha, self.lexical_alpha, self.folds, self.seed = k, text_alpha, lexical_alpha, folds, seed
        self.threshold: float | None = None  # send to the cheap model when p_cheap_ok >= threshold
        self.info: dict[str, Any] = {}
        self.featurizer = Featurizer()
        self.vectors = self.gains = None
        self.text: _Text | None = None
        self.lexical: _Lexical | None = None
        self.rank_tables: np.ndarray | None = None  # (3, _QUANTILES) out-of-fold score quantiles
        self.iso_x = self.iso_y = None  # mean rank -> p_cheap_ok
        self.train_hashes = self.oof_p = None

    # -- training ------------------------------------------------------------------------------------------
    def fit(self, prompts: list[str], cheap_scores, strong_scores, progress: bool = True,
            embeddings: np.ndarray | None = None) -> Router:
        """Fit on labelled prompts. `embeddings` (from `Featurizer.embed`) skips the embedding pass."""
        from sklearn.isotonic import IsotonicRegression
        from tqdm import tqdm

        cheap_scores, strong_scores = np.asarray(cheap_scores, float), np.asarray(strong_scores, float)
        n = len(prompts)
        if n < 2 or len(cheap_scores) != n or len(strong_scores) != n:
            raise ValueError("need at least two labelled prompts, with one cheap and one strong score each")
        gains = strong_scores - cheap_scores
        bar = tqdm(total=4, desc="training router", unit="step", disable=not progress)
        E = embeddings if embeddings is not None else self.featurizer.embed(prompts, progress=progress)
        L = lexical_matrix(prompts)
        bar.update()
        self.vectors, self.gains = np.asarray(E, np.float32), gains.astype(np.float32)
        oof = np.empty((3, n))
        oof[0] = _knn(self.vectors, self.vectors, self.gains, self.k, leave_same_out=True)
        bar.update()
        for held in _folds(n, self.folds, self.seed):  # out-of-fold scores: what unseen prompts would get
            fit_idx = np.setdiff1d(np.arange(n), held)
            oof[1, held] = _Text.fit([prompts[i] for i in fit_idx], gains[fit_idx], self.text_alpha).predict(
                [prompts[i] for i in held])
            oof[2, held] = _Lexical.fit(L[fit_idx], gains[fit_idx], self.lexical_alpha).predict(L[held])
        bar.update()
        self.text = _Text.fit(prompts, gains, self.text_alpha)
        self.lexical = _Lexical.fit(L, gains, self.lexical_alpha)
        self.rank_tables = np.quantile(oof, np.linspace(0, 1, _QUANTILES), axis=1).T.astype(np.float64)
        u = self._combine(oof)
        ok = (cheap_scores >= strong_scores).astype(float)
        iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(u, ok)
        self.iso_x, self.iso_y = iso.X_thresholds_.astype(np.float64), iso.y_thresholds_.astype(np.float64)
        self.train_hashes, self.oof_p = prompt_hashes(prompts), self._p_from_u(u)
        bar.update()
        bar.close()
        self.threshold = None
        self.info = {"examples": n, "cheap_ok_share": float(ok.mean()), "mean_gain": float(gains.mean()),
                     "cheap_quality": float(cheap_scores.mean()), "strong_quality": float(strong_scores.mean()),
                     "text_terms": len(self.text.terms)}
        return self

    # -- scoring ---------------------------------------------------------------------------------------------
    def _combine(self, scores: np.ndarray) -> np.ndarray:
        return np.mean([_rank(self.rank_tables[i], scores[i]) for i in range(len(COMPONENTS))], axis=0)

    def _p_from_u(self, u: np.ndarray) -> np.ndarray:
        # the isotonic map is flat in places: a tiny slope keeps the ranking of prompts within a step
        return np.clip(np.interp(u, self.iso_x, self.iso_y) - 1e-6 * u, 0.0, 1.0)

    def component_scores(self, prompts: list[str], embeddings: np.ndarray | None = None,
                         progress: bool = False) -> np.ndarray:
        """(3, n) expected-gain estimates of the knn, text and lexical scorers."""
        if self.vectors is None:
            raise ValueError("router is not trained")
        E = embeddings if embeddings is not None else self.featurizer.embed(prompts, progress=progress)
        return np.stack([_knn(np.asarray(E, np.float32), self.vectors, self.gains, self.k),
                         self.text.predict(prompts), self.lexical.predict(lexical_matrix(prompts))])

    def p_cheap_ok(self, prompts: list[str], embeddings: np.ndarray | None = None, progress: bool = False,
                   out_of_fold: bool = False) -> np.ndarray:
        """p(cheap score >= strong score) per prompt. `out_of_fold`: training prompts get the score they had
        when held out (calibrating or evaluating on training data is then honest)."""
        if not prompts:
            return np.zeros(0)
        p = self._p_from_u(self._combine(self.component_scores(prompts, embeddings, progress)))
        if out_of_fold:
            where = {int(h): i for i, h in enumerate(self.train_hashes)}
            for j, h in enumerate(prompt_hashes(prompts)):
                i = where.get(int(h))
                if i is not None:
                    p[j] = self.oof_p[i]
        return p

    def seen_in_training(self, prompts: list[str]) -> int:
        return int(np.isin(prompt_hashes(prompts), self.train_hashes).sum())

    # -- files -------------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"kind": KIND, "version": VERSION, "cheap": self.cheap, "strong": self.strong,
                "threshold": self.threshold, "features": self.featurizer.spec(),
                "model": {"components": list(COMPONENTS), "combine": "mean rank of out-of-fold scores, "
                          "isotonic map to P(cheap score >= strong score)", "k": self.k,
                          "text": {"ngrams": list(_Text.NGRAMS), "alpha": self.text_alpha},
                          "lexical": {"bins": "deciles", "alpha": self.lexical_alpha},
                          "folds": self.folds, "seed": self.seed},
                "info": self.info}

    def save(self, path: str | Path) -> None:
        if self.vectors is None:
            raise ValueError("router is not trained")
        edges = self.lexical.edges
        lens = np.asarray([len(e) for e in edges], np.int32)
        arrays = {
            "meta": np.asarray(json.dumps(self.meta())),
            "vectors": self.vectors.astype(np.float16), "gains": self.gains,
            "text_terms": np.asarray(self.text.terms, dtype=str), "text_idf": self.text.idf,
            "text_coef": self.text.coef, "text_intercept": np.asarray(self.text.intercept),
            "lexical_edges": np.concatenate(edges) if lens.sum() else np.zeros(0, np.float32),
            "lexical_edge_counts": lens, "lexical_coef": self.lexical.coef,
            "lexical_intercept": np.asarray(self.lexical.intercept),
            "rank_tables": self.rank_tables, "iso_x": self.iso_x, "iso_y": self.iso_y,
            "train_hashes": self.train_hashes, "oof_p": self.oof_p,
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)  # never a half-written router where the gateway looks
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> Router:
        not_router = f"{path}: not a router file (scrimp router train writes them)"
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                a = {k: z[k] for k in z.files if k != "meta"}
        except OSError:
            raise
        except Exception as exc:  # not an npz, pickled content, no meta...
            raise ValueError(not_router) from exc
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise ValueError(not_router)
        if meta.get("version") != VERSION:
            raise ValueError(f"{path}: router file version {meta.get('version')}, this scrimp reads {VERSION}: "
                             "train it again")
        m = meta["model"]
        r = cls(meta["cheap"], meta["strong"], m["k"], m["text"]["alpha"], m["lexical"]["alpha"], m["folds"],
                m["seed"])
        r.threshold, r.info = meta.get("threshold"), meta.get("info") or {}
        if meta["features"]["lexical"] != LEXICAL:
            raise ValueError(f"{path}: made with other lexical features: train it again")
        spec = meta["features"]
        # files from before the embedded text was normalised keep reading the prompt as written
        r.featurizer = Featurizer(spec.get("runtime", "onnx"), int8=spec.get("int8", False),
                                  normalize=spec.get("normalize", False))
        r.vectors, r.gains = a["vectors"].astype(np.float32), a["gains"].astype(np.float32)
        r.text = _Text(a["text_terms"].tolist(), a["text_idf"], a["text_coef"], float(a["text_intercept"]))
        edges = np.split(a["lexical_edges"], np.cumsum(a["lexical_edge_counts"])[:-1])
        r.lexical = _Lexical(edges, a["lexical_coef"], float(a["lexical_intercept"]))
        r.rank_tables, r.iso_x, r.iso_y = a["rank_tables"], a["iso_x"], a["iso_y"]
        r.train_hashes, r.oof_p = a["train_hashes"], a["oof_p"]
        return r
