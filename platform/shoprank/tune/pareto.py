"""The Pareto front of a sweep over per-task scores, and picking one point of it by preference.

Every score is "higher is better" (``shoprank.tune.objective.task_scores`` turns ``min`` metrics
into 1 − value), so a point dominates another when it is no worse on every task and better on one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shoprank.errors import ConfigError


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (NaN scores count as the worst).

    Duplicates are all kept (neither dominates the other)."""
    clean = [[-math.inf if math.isnan(v) else v for v in p] for p in points]
    return [i for i, p in enumerate(clean) if not any(dominates(q, p) for j, q in enumerate(clean) if j != i)]


def parse_prefer(text: str, tasks: Sequence[str]) -> dict[str, float]:
    """``click=0.7,relevance=0.3`` → {task: weight} normalised to sum 1; ConfigError on bad input.

    Every name must be one of ``tasks`` (the front's axes); weights are ≥ 0 and not all 0."""
    prefer: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ConfigError(f"--prefer: {part!r} is not task=weight (e.g. click=0.7,relevance=0.3)")
        if name not in tasks:
            raise ConfigError(f"--prefer: {name!r} is not on the front; choose from {list(tasks)}")
        if name in prefer:
            raise ConfigError(f"--prefer: {name!r} is given twice")
        try:
            w = float(value)
        except ValueError:
            raise ConfigError(f"--prefer: {name}={value!r}: the weight is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"--prefer: {name}={value}: the weight must be a finite number ≥ 0")
        prefer[name] = w
    total = sum(prefer.values())
    if not prefer or total <= 0:
        raise ConfigError("--prefer: give at least one task with a positive weight, e.g. click=0.7,relevance=0.3")
    return {t: w / total for t, w in prefer.items()}


def preferred(scores: Sequence[dict[str, float]], prefer: dict[str, float]) -> int:
    """Index of the point with the highest Σ prefer[t]·score[t] (the first on ties)."""

    def value(s: dict[str, float]) -> float:
        v = sum(w * s.get(t, math.nan) for t, w in prefer.items())
        return -math.inf if math.isnan(v) else v

    if not scores:
        raise ConfigError("the sweep's front is empty: no trial finished its full budget")
    return max(range(len(scores)), key=lambda i: (value(scores[i]), -i))
