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


def task_scores(
    metrics: dict[str, float], objective: Objective, tasks: list[str], prefix: str = "val/"
) -> dict[str, float]:
    """One score per task: the composite of the objective's metrics of that task alone."""
    scores = {}
    for task in tasks:
        own = {n: m for n, m in objective.metrics.items() if n.partition("/")[0] == task}
        if own:
            scores[task] = composite(metrics, objective.model_copy(update={"metrics": own}), prefix)
    return scores
