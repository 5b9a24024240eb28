"""A semantic-cache model: the embedder, the verifier and the calibrated threshold, saved as one
directory (`semantic.json` + `verifier.npz`). `scrimp cache train` writes one; the default ships in
`scrimp/cache/semantic/default_model/` (docs/semantic-cache.md says how it was made).

The decision for a (cached question, new question) pair is the same everywhere (the gateway, `scrimp
cache eval`, the benchmark): cosine >= `floor` to be a candidate at all, then the verifier's probability
(or, with no verifier, the cosine itself) >= `threshold`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scrimp.cache.semantic.normalize import normalize
from scrimp.cache.semantic.pair_features import features
from scrimp.cache.semantic.verifier import TreeVerifier
from scrimp.embedding.embedder import Embedder

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"


class ModelError(ValueError):
    pass


@dataclass
class SemanticModel:
    embedder: Embedder
    verifier: TreeVerifier | None = None
    threshold: float = 0.95
    floor: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)  # calibration and provenance, for humans and `eval`
    embedder_spec: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """The embedder's dimension (a remote endpoint's is learned from its first answer)."""
        return int(self.embedder.dim)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.embedder.embed([normalize(t) for t in texts], progress=progress)

    def scores(self, texts_a: list[str], texts_b: list[str], u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The decision score of each pair (higher = more surely the same question)."""
        cos = np.einsum("ij,ij->i", u, v)
        if self.verifier is None:
            return cos
        out = np.zeros(len(cos))
        cand = cos >= self.floor
        if cand.any():
            idx = np.flatnonzero(cand)
            X = features([normalize(texts_a[i]) for i in idx], [normalize(texts_b[i]) for i in idx], u[idx], v[idx],
                         interactions=self.verifier.interactions)
            out[idx] = self.verifier.score(X)
        return out

    def accepts(self, cos: np.ndarray, score: np.ndarray, threshold: float | None = None) -> np.ndarray:
        t = self.threshold if threshold is None else threshold
        return (np.asarray(cos) >= self.floor) & (np.asarray(score) >= t)

    def threshold_for(self, max_false_hit: float) -> float:
        """The calibrated threshold for another false-hit target: the one calibrated for the largest
        target not above it (stricter, never looser, than asked)."""
        curve = {float(k): float(v) for k, v in (self.info.get("calibration_curve") or {}).items()}
        fits = [t for t in curve if t <= max_false_hit + 1e-12]
        if not fits:
            raise ModelError(f"no calibration for a false-hit rate of {max_false_hit} or less in this model; "
                             f"calibrated targets: {sorted(curve) or 'none'} (run scrimp cache calibrate)")
        return curve[max(fits)]

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"embedder": self.embedder_spec, "threshold": self.threshold, "floor": self.floor,
                "verifier": "verifier.npz" if self.verifier is not None else None, **self.info}
        if self.verifier is not None:
            self.verifier.save(directory / "verifier.npz")
        tmp = directory / "semantic.json.tmp"
        tmp.write_text(json.dumps(spec, indent=2) + "\n")
        os.replace(tmp, directory / "semantic.json")
        return directory


def load_model(directory: str | Path | None = None, *, runtime: str = "onnx",
               remote: dict[str, Any] | None = None, threads: int | None = None) -> SemanticModel:
    """Load a model directory (default: the shipped one). `runtime` is "onnx" (default) or "torch" for the
    local embedder; `remote` ({"base_url", "model", "api_key"}) uses an embeddings endpoint instead."""
    from scrimp.embedding.embedder import make_embedder

    directory = Path(directory) if directory else DEFAULT_MODEL_DIR
    spec_path = directory / "semantic.json"
    if not spec_path.exists():
        raise ModelError(f"{directory}: not a semantic-cache model (no semantic.json)")
    try:
        spec = json.loads(spec_path.read_text())
        threshold, floor = float(spec["threshold"]), float(spec.get("floor", 0.5))
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{spec_path}: unreadable ({exc})") from exc
    verifier = TreeVerifier.load(directory / spec["verifier"]) if spec.get("verifier") else None
    embedder_spec = spec.get("embedder") or {}
    # threads: the default suits the gateway's one-question lookups; all cores for bulk work (train, eval)
    embedder = make_embedder(embedder_spec, directory, runtime=runtime, remote=remote, threads=threads)
    info = {k: v for k, v in spec.items() if k not in ("embedder", "threshold", "floor", "verifier")}
    return SemanticModel(embedder, verifier, threshold, floor, info, embedder_spec)
