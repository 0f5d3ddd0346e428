"""The blend: final score = sum over tasks of weight x task score (weights validated upstream)."""

from __future__ import annotations

import numpy as np


def blend(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted sum of the named per-task score arrays (each [N]); missing tasks count as 0."""
    n = len(next(iter(scores.values()))) if scores else 0
    total = np.zeros(n, dtype=np.float64)
    for task, w in weights.items():
        if w and task in scores:
            total += float(w) * np.asarray(scores[task], dtype=np.float64)
    return total.astype(np.float32)


def top_k(final: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best final scores, best first (stable for ties)."""
    k = min(k, final.shape[0]) if k > 0 else final.shape[0]
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-final, kind="stable")
    return order[:k]
