"""One BLAS thread in a serving process.

Request-time math in the gateway (a router's or an index's matrix-vector products over a few thousand
rows) is far too small to gain from BLAS worker threads, and those threads, spinning between calls,
compete with ONNX Runtime's for the same cores: measured on 2 cores (bench/router_mmlu.py), a learned-router
decision took 8.1 ms p50 with OpenBLAS's default pool and 3.2 ms with one thread. Stages that do
such math call this when the gateway starts; training commands keep every core."""

from __future__ import annotations

import logging

log = logging.getLogger("scrimp")
_done = False


def serve_with_one_blas_thread() -> None:
    global _done
    if _done:
        return
    _done = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without the ml extra there is no numpy-heavy stage to protect
        return
    threadpool_limits(1, user_api="blas")
    log.debug("BLAS limited to one thread for serving")
