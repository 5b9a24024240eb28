"""all-MiniLM-L6-v2 on ONNX Runtime: the same weights, exported locally from the shipped safetensors (no
download), several times faster than PyTorch for the one-short-question lookups a cache does.

The export is made once (`scrimp cache export-onnx`, or on first use) and kept beside the cache data; the
embeddings match the PyTorch ones to ~1e-6 (tests check it)."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the model's trained window (sentence_bert_config.json)
DIM = 384
LOOKUP_THREADS = min(2, os.cpu_count() or 1)  # one short question: 6.5 ms on one core here, 3.7 ms on two


def export(model_dir: str | Path, out_path: str | Path, int8: bool = False) -> Path:
    """Write `model.onnx` for the transformer of a sentence-transformers directory (base or fine-tuned).
    Says so in one line on stderr; the exporters' own warnings (deprecations, tracer notes) are not the
    user's business and are silenced."""
    import sys

    print(f"scrimp: preparing the local embedding model (a one-time {'int8 ' if int8 else ''}ONNX export to "
          f"{out_path})", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        verbosity, root = hf_logging.get_verbosity(), logging.getLogger()
        level, bars = root.level, hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        root.setLevel(logging.ERROR)  # onnxruntime's quantizer advises pre-processing through the root logger
        try:
            return _export(model_dir, out_path, int8)
        finally:
            hf_logging.set_verbosity(verbosity)
            root.setLevel(level)
            if bars:
                hf_logging.enable_progress_bar()


def _export(model_dir: str | Path, out_path: str | Path, int8: bool) -> Path:
    import torch
    from transformers import AutoModel

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):  # keyword call: the HF forward's positional order is not stable
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Encoder().eval()
    dummy = torch.ones((1, 8), dtype=torch.long)
    tmp = out_path.with_suffix(f".tmp{os.getpid()}.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy, dummy, torch.zeros_like(dummy)), str(tmp), dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                          ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17)
    if int8:  # int8 weights: about half the time per lookup (docs/semantic-cache.md); embeddings shift
        # slightly, so thresholds are calibrated on them
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = tmp.with_name(tmp.name + ".int8.onnx")
        quantize_dynamic(str(tmp), str(quantized), weight_type=QuantType.QInt8)
        os.replace(quantized, tmp)
    else:  # fuse attention, layer norms and GELU for ONNX Runtime (exact: outputs agree to ~1e-7)
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(str(tmp), model_type="bert", num_heads=12, hidden_size=DIM)
        fused.save_model_to_file(str(tmp))
    os.replace(tmp, out_path)  # never leave a half-written model where the loader looks
    return out_path


_shared: dict[tuple[str, int], OnnxEmbedder] = {}
_shared_lock = threading.Lock()


def shared_onnx_embedder(model_dir: str | Path, onnx_path: str | Path, *, threads: int = LOOKUP_THREADS,
                         int8: bool = False) -> OnnxEmbedder:
    """One embedder (one ONNX Runtime session) per export and thread count in the process: the semantic
    cache and the router use the same model, and keep one copy of it."""
    key = (str(Path(onnx_path).resolve()), threads)
    with _shared_lock:
        emb = _shared.get(key)
        if emb is None:
            emb = _shared[key] = OnnxEmbedder(model_dir, onnx_path, threads=threads, int8=int8)
        return emb


class OnnxEmbedder:
    dim = 384

    def __init__(self, model_dir: str | Path, onnx_path: str | Path, batch_size: int = 64,
                 threads: int = LOOKUP_THREADS, int8: bool = False) -> None:
        self.int8 = int8
        self.threads = threads
        self.model_dir = Path(model_dir)
        self.onnx_path = Path(onnx_path)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session = None
        self._tokenizer = None
        self.key = f"onnx:{self.onnx_path.resolve()}"  # names the vectors it makes (Call.embeddings)
        self.texts_embedded = 0

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            if not self.onnx_path.exists():
                export(self.model_dir, self.onnx_path, self.int8)
            tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            tok.enable_truncation(MAX_TOKENS)
            tok.enable_padding(pad_id=0, pad_token="[PAD]")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._tokenizer = tok
            self._session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self._load()
        self.texts_embedded += len(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # similar lengths together: less padding per batch
        order = np.argsort([len(t) for t in texts], kind="stable")
        texts = [texts[i] for i in order]
        starts = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        sorted_out = np.empty_like(out)
        for start in starts:
            sorted_out[start:start + self.batch_size] = self._embed_batch(texts[start:start + self.batch_size])
        out[order] = sorted_out
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                          "token_type_ids": np.zeros_like(ids)})[0]
        # mean pooling over real tokens, then unit length: what the sentence-transformers config specifies
        summed = (hidden * mask[..., None]).sum(axis=1)
        vecs = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return (vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)).astype(np.float32)
