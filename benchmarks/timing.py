"""The benchmarks' one timer: a call with compilation, then the mean of further calls."""

from __future__ import annotations

import time

import jax


def timed(fn, repeat=3):
    """(compile + first call seconds, mean seconds of ``repeat`` further calls, last value)."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeat):
        out = jax.block_until_ready(fn())
    return first, (time.perf_counter() - t) / repeat, out
