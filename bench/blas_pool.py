"""Shared by the lookup benchmarks: time one call per item, with BLAS on one thread (as the gateway serves)
or with the default pool, side by side in one run."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable

import numpy as np


@contextlib.contextmanager
def blas_threads(n: int | None):
    """n threads for BLAS inside the block; None: the library's default pool (one per core)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(n or os.cpu_count(), user_api="blas"):
        yield


def time_each(fn: Callable, items: Iterable) -> np.ndarray:
    """Seconds per call, one call per item."""
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return np.asarray(out)


def p50_p99_ms(seconds: np.ndarray) -> str:
    return f"p50 {np.percentile(seconds, 50) * 1e3:.2f} ms, p99 {np.percentile(seconds, 99) * 1e3:.2f} ms"
