"""A closed-loop load generator for benchmarks: call a function over requests at a fixed concurrency."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def pct(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``xs`` (NaN when empty)."""
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def run_load(fn: Callable[[Any], Any], reqs: Sequence[Any], concurrency: int) -> tuple[list[float], float, list[Any]]:
    """Latencies (ms) of ``fn(req)`` over ``reqs`` with ``concurrency`` callers, wall seconds, results."""
    lat: list[float] = [0.0] * len(reqs)
    out: list[Any] = [None] * len(reqs)

    def one(i: int) -> None:
        t = time.perf_counter()
        out[i] = fn(reqs[i])
        lat[i] = (time.perf_counter() - t) * 1e3

    t0 = time.perf_counter()
    if concurrency == 1:
        for i in range(len(reqs)):
            one(i)
    else:
        with ThreadPoolExecutor(concurrency) as ex:
            list(ex.map(one, range(len(reqs))))
    return lat, time.perf_counter() - t0, out
