"""A trained offload model: a small classifier (classifier.py) over the prompts' MiniLM embeddings and wording, the
labels it can answer with and how each is rendered (the LLM's own commonest wording), and the calibrated confidence
threshold.

On disk it is one directory (`weights.npz`, `offload.json`), written whole or not at all: the files go to a
temporary directory beside it, which is then renamed into place."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scrimp.offload.classifier import Classifier

FORMAT = 2
EMBEDDER = {"name": "all-MiniLM-L6-v2", "runtime": "onnx", "int8": True}  # scrimp.embedding.shared_minilm()


@dataclass
class Decision:
    label: str
    confidence: float
    served: bool  # confident enough to answer locally


@dataclass
class OffloadModel:
    labels: list[str]  # class index -> label
    classifier: Classifier
    renderings: dict[str, str]  # label -> the answer text served for it
    threshold: float  # answer locally when confidence >= threshold
    info: dict[str, Any] = field(default_factory=dict)  # target, calibration, training data, timings

    def probabilities(self, texts: list[str], vectors: np.ndarray) -> np.ndarray:
        return self.classifier.probabilities(texts, vectors)

    def decide(self, texts: list[str], vectors: np.ndarray, threshold: float | None = None) -> list[Decision]:
        """What the gateway does with each question: the likeliest label, its probability, and whether that
        clears the threshold."""
        t = self.threshold if threshold is None else threshold
        p = self.probabilities(texts, vectors)
        best = p.argmax(axis=1)
        conf = p[np.arange(len(p)), best]
        return [Decision(self.labels[i], float(c), bool(c >= t)) for i, c in zip(best, conf)]

    def rendering(self, label: str) -> str:
        return self.renderings.get(label, label)

    @property
    def target(self) -> float:
        return float(self.info.get("calibration", {}).get("target_agreement", 0.98))

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            np.savez(tmp / "weights.npz", **{k: v.astype(np.float32) for k, v in self.classifier.weights.items()})
            meta = {"format": FORMAT, "embedder": EMBEDDER, "labels": self.labels, "renderings": self.renderings,
                    "vocabularies": self.classifier.vocabularies,
                    "threshold": None if math.isinf(self.threshold) else self.threshold,
                    "saved_at": time.time(), **self.info}
            (tmp / "offload.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, path: str | Path) -> OffloadModel:
        path = Path(path)
        meta_path = path / "offload.json"
        if not meta_path.exists():
            raise ValueError(f"{path} is not an offload model directory (no offload.json; scrimp offload train "
                             "writes one)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: model format {meta.get('format')!r}, this scrimp reads {FORMAT}")
        with np.load(path / "weights.npz") as w:
            weights = {k: w[k] for k in w.files}
        labels = list(meta.pop("labels"))
        if weights["w2"].shape[1] != len(labels) or weights["lw"].shape[1] != len(labels):
            raise ValueError(f"{path}: weights do not match its {len(labels)} labels")
        threshold = meta.pop("threshold")
        renderings = meta.pop("renderings")
        for key in ("format", "embedder"):
            meta.pop(key, None)
        return cls(labels, Classifier(weights, meta.pop("vocabularies")), renderings,
                   float("inf") if threshold is None else float(threshold),
                   meta)


def version(path: str | Path) -> tuple[int, int] | None:
    """Identifies the model now in `path` (a retrain swaps in a new directory): None when there is none."""
    try:
        st = os.stat(Path(path) / "offload.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    if not (out / "offload.json").exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not an offload model directory: not replacing it")
    old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    os.replace(out, old)  # a reader between these two renames finds no model and keeps the one it has loaded
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
