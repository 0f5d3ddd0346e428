"""The blend: final score = sum over tasks of weight x task score (weights validated upstream).

Every blendable task score is in 0..1 and every weight in 0..max_blend_weight, so the final score
is in 0..sum(weights). The sum runs in float64 over the float32 task scores with each weight taken
at float32 precision (what ``SearchResponse.blend_weights`` carries), then rounds to float32: a
client recomputing sum(blend_weights[t] * scores[t]) from a response gets ``score`` to float32
rounding (the exception is the click blend's list, whose score is ``scores["click_blend"]``).
"""

from __future__ import annotations

import numpy as np


def blend(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted sum of the named per-task score arrays (each [N]); missing tasks count as 0."""
    n = len(next(iter(scores.values()))) if scores else 0
    total = np.zeros(n, dtype=np.float64)
    for task, w in weights.items():
        if w and task in scores:
            total += float(np.float32(w)) * np.asarray(scores[task], dtype=np.float32).astype(np.float64)
    return total.astype(np.float32)


def top_k(final: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best final scores, best first (stable for ties)."""
    k = min(k, final.shape[0]) if k > 0 else final.shape[0]
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-final, kind="stable")
    return order[:k]
