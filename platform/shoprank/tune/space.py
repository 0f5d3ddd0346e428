"""Search space over task loss weights, and the mapping from sampled params to weights."""

from __future__ import annotations

import math

from ray import tune

from shoprank.tune.config import SearchSpace

SIMPLEX_FLOOR = 1e-3


def param_space(space: SearchSpace, tasks: list[str]) -> dict[str, object]:
    """Tune param space: one ``w_<task>`` per searched task."""
    if space.parameterisation == "log_uniform":
        return {f"w_{t}": tune.loguniform(space.low, space.high) for t in tasks}
    return {f"w_{t}": tune.uniform(SIMPLEX_FLOOR, 1.0) for t in tasks}


def weights_from_params(params: dict[str, object], space: SearchSpace, tasks: list[str]) -> dict[str, float]:
    """Task weights from a trial's params (simplex: flat-Dirichlet draw scaled to sum len(tasks)).

    Tasks that are trained but not searched keep weight 1.
    """
    raw = {t: float(params[f"w_{t}"]) for t in tasks if f"w_{t}" in params}  # type: ignore[arg-type]
    if space.parameterisation == "simplex" and raw:
        expo = {t: -math.log(max(u, SIMPLEX_FLOOR)) for t, u in raw.items()}
        total = sum(expo.values())
        raw = {t: len(expo) * e / total for t, e in expo.items()}
    return raw
