"""The declared composite objective, computed the same way on validation and test metrics."""

from __future__ import annotations

import math

from shoprank.tune.config import Objective


def normalised(value: float, mode: str) -> float:
    """``max`` metrics as they are; ``min`` metrics (0..1 scale) as 1 − value."""
    return value if mode == "max" else 1.0 - value


def composite(metrics: dict[str, float], objective: Objective, prefix: str = "val/") -> float:
    """Σ w·norm(metric) / Σ w over the objective's metrics found in ``metrics``.

    A metric that is missing or NaN counts as 0 so a trial cannot win by dropping a task.
    """
    total, weight = 0.0, 0.0
    for name, spec in objective.metrics.items():
        v = metrics.get(prefix + name)
        score = 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else normalised(float(v), spec.mode)
        total += spec.weight * score
        weight += spec.weight
    return total / weight
