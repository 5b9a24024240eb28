"""`scrimp cache train` and `calibrate`: from labelled pairs to a model directory.

train: split the pairs by question groups into a training part and a calibration part; optionally adapt
the embedder's top layers on the training part (adapt.py); fit the verifier on the training part; then
calibrate the threshold on the calibration part, which neither step has seen.

A model whose calibration part cannot support the target (calibrate.py: the false-hit bound at the chosen
threshold is above it) is not written unless `force`. The model records the data it was made from
(`data_provenance`: the file's path, pair count, sha256 and the date)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from scrimp.cache.semantic.calibrate import Calibration, calibrate
from scrimp.cache.semantic.model import SemanticModel, load_model
from scrimp.cache.semantic.normalize import normalize
from scrimp.cache.semantic.pair_features import features
from scrimp.cache.semantic.pairs import Pairs, group_split
from scrimp.cache.semantic.verifier import TreeVerifier

CURVE_TARGETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


class CalibrationUnsupported(ValueError):
    """The pairs cannot support the false-hit target (see `Calibration.supported`); `force` to write anyway."""

    def __init__(self, result: Calibration) -> None:
        super().__init__(result.shortfall())
        self.result = result


def data_provenance(path: str | Path, pairs: int) -> dict[str, Any]:
    """What a model records about the pairs file it was made from: absolute path, number of pairs read,
    sha256 of the file's bytes, and the date (UTC) the model was made from it."""
    path = Path(path)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path.resolve()), "pairs": int(pairs), "sha256": digest.hexdigest(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def embed_pairs(model: SemanticModel, pairs: Pairs, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embed each distinct text once."""
    texts = sorted(set(pairs.text_a) | set(pairs.text_b))
    vecs = model.embed(texts, progress=progress)
    pos = {t: i for i, t in enumerate(texts)}
    return vecs[[pos[t] for t in pairs.text_a]], vecs[[pos[t] for t in pairs.text_b]]


def pair_scores(model: SemanticModel, pairs: Pairs, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, decision score) per pair, as the gateway computes them."""
    u, v = embed_pairs(model, pairs, progress)
    return np.einsum("ij,ij->i", u, v), model.scores(pairs.text_a, pairs.text_b, u, v)


def calibrate_model(model: SemanticModel, pairs: Pairs, max_false_hit: float, confidence: float = 0.95,
                    progress: bool = True, source: dict[str, Any] | None = None) -> Calibration:
    """Set the model's threshold (and its curve for other targets) from labelled pairs. The curve keeps only
    the targets these pairs support (a feature asking for another is refused by `threshold_for`); the
    caller checks `result.supported` for the target itself. `source` (data_provenance) is recorded."""
    cos, score = pair_scores(model, pairs, progress)
    # a pair below the cosine floor is never a hit, whatever its score
    score = np.where(cos >= model.floor, score, -np.inf)
    result = calibrate(score, pairs.labels, max_false_hit, confidence)
    others = {t: calibrate(score, pairs.labels, t, confidence) for t in CURVE_TARGETS}
    curve = {str(t): c.threshold for t, c in others.items() if c.supported}
    curve[str(max_false_hit)] = result.threshold
    model.threshold = result.threshold
    model.info["calibration"] = result.to_dict()
    if source is not None:
        model.info["calibration"]["data"] = source
    model.info["calibration_curve"] = dict(sorted(curve.items(), key=lambda kv: float(kv[0])))
    return result


def _save_delta(adapted_dir: Path, out: Path, layers: int) -> None:
    """Keep only the trained top layers (float16): a few MB instead of the whole model."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(adapted_dir / "model.safetensors"))
    top = {f"encoder.layer.{i}." for i in range(6 - layers, 6)}
    delta = {k: v.astype(np.float16) for k, v in weights.items() if any(k.startswith(p) for p in top)}
    if not delta:
        raise RuntimeError(f"no top-layer tensors found in {adapted_dir}")
    save_file(delta, str(out))


def train(pairs: Pairs, out_dir: str | Path, *, max_false_hit: float = 0.01, calibration_share: float = 0.3,
          adapt_embedder: bool = False, adapt_layers: int = 2, adapt_epochs: int = 1, confidence: float = 0.95,
          runtime: str = "onnx", int8: bool = False, seed: int = 0, progress: bool = True, force: bool = False,
          source: dict[str, Any] | None = None) -> tuple[SemanticModel, Calibration]:
    """Raises CalibrationUnsupported (nothing written) when the calibration part cannot support
    `max_false_hit`, unless `force`; `source` (data_provenance) is recorded in the model."""
    fit_mask, cal_mask = group_split(pairs, (1 - calibration_share, calibration_share), seed)
    fit, cal = pairs.subset(fit_mask), pairs.subset(cal_mask)
    if len(set(fit.labels.tolist())) < 2 or len(set(cal.labels.tolist())) < 2:
        raise ValueError("need duplicates and non-duplicates in both the training and calibration parts "
                         f"({len(pairs)} pairs given)")
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".scrimp-train-", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        spec: dict = {"base": "all-MiniLM-L6-v2", "int8": int8}
        if adapt_embedder:
            from scrimp.cache.semantic.adapt import adapt
            from scrimp.embedding.embedder import default_model_path

            adapted = adapt(default_model_path(), fit.text_a, fit.text_b, fit.labels.tolist(), staging / "adapted",
                            train_layers=adapt_layers, epochs=adapt_epochs, seed=seed, progress=progress)
            _save_delta(adapted, staging / "embedder_delta.safetensors", adapt_layers)
            shutil.rmtree(adapted)
            spec["delta"] = "embedder_delta.safetensors"
        (staging / "semantic.json").write_text(json.dumps({"threshold": 1.0, "embedder": spec}))
        model = load_model(staging, runtime=runtime, threads=os.cpu_count() or 1)
        u, v = embed_pairs(model, fit, progress)
        X = features([normalize(t) for t in fit.text_a], [normalize(t) for t in fit.text_b], u, v, interactions=False)
        keep = np.einsum("ij,ij->i", u, v) >= model.floor  # the verifier only ever sees candidates
        model.verifier = TreeVerifier.fit(X[keep], fit.labels[keep], interactions=False, seed=seed, progress=progress)
        result = calibrate_model(model, cal, max_false_hit, confidence, progress, source=source)
        if not result.supported:
            if not force:
                raise CalibrationUnsupported(result)
            model.info["calibration"]["forced"] = True
        model.info["trained_on"] = {"pairs": len(pairs), "fit_pairs": len(fit), "calibration_pairs": len(cal),
                                    "adapted_embedder": adapt_embedder, "seed": seed}
        if source is not None:
            model.info["trained_on"]["data"] = source
        model.save(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)  # the finished model appears at once, never half-written
        return load_model(out_dir, runtime=runtime, threads=os.cpu_count() or 1), result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
