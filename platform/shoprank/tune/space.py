"""Search space over task loss weights, and the mapping from sampled params to weights."""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from shoprank.tune.config import SearchSpace

SIMPLEX_FLOOR = 1e-3


def param_space(space: SearchSpace, tasks: list[str]) -> dict[str, Any]:
    """Tune param space: one ``w_<task>`` per searched task (also PBT's resample distributions)."""
    if space.parameterisation == "log_uniform":
        return {f"w_{t}": tune.loguniform(space.low, space.high) for t in tasks}
    return {f"w_{t}": tune.uniform(SIMPLEX_FLOOR, 1.0) for t in tasks}


def bounds(space: SearchSpace) -> tuple[float, float]:
    """The range a ``w_<task>`` param lives in."""
    return (space.low, space.high) if space.parameterisation == "log_uniform" else (SIMPLEX_FLOOR, 1.0)


def clip_params(config: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """PBT's ``custom_explore_fn``: its ×0.8/×1.2 perturbations kept inside the space's bounds."""
    lo, hi = bounds(space)
    return {k: min(max(float(v), lo), hi) if k.startswith("w_") else v for k, v in config.items()}


def weights_from_params(params: dict[str, object], space: SearchSpace, tasks: list[str]) -> dict[str, float]:
    """Task weights from a trial's params (simplex: flat-Dirichlet draw scaled to sum len(tasks)).

    Params outside the space's bounds (a PBT perturbation) are clipped into it first. Tasks that
    are trained but not searched keep weight 1.
    """
    lo, hi = bounds(space)
    raw = {t: min(max(float(params[f"w_{t}"]), lo), hi) for t in tasks if f"w_{t}" in params}  # type: ignore[arg-type]
    if space.parameterisation == "simplex" and raw:
        expo = {t: -math.log(min(max(u, SIMPLEX_FLOOR), 1.0 - SIMPLEX_FLOOR)) for t, u in raw.items()}
        total = sum(expo.values())
        raw = {t: len(expo) * e / total for t, e in expo.items()}
    return raw
