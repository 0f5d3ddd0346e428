"""The sweep's scheduler and search algorithm, built from ``TuneConfig``.

Metric and mode go to the scheduler and the searcher themselves (never to ``tune.TuneConfig``),
because a multi-objective Optuna study optimises a list of per-task scores while ASHA (and PBT)
still rank trials by the one composite ``objective``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from shoprank.tune.config import TuneConfig
from shoprank.tune.space import clip_params, param_space

OBJECTIVE = "objective"
PBT_CHECKPOINTS = 4  # kept per trial under PBT: a donor's checkpoint must outlive the members that copy it


def score_key(task: str) -> str:
    """The reported key of one task's score (``shoprank.tune.objective.task_scores``)."""
    return f"score/{task}"


def build_scheduler(tune_cfg: TuneConfig, max_t: int, searched: list[str]) -> Any:
    """ASHA, PBT (mutating the ``w_<task>`` params within the space's bounds) or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if tune_cfg.scheduler == "asha":
        return ASHAScheduler(
            metric=OBJECTIVE,
            mode="max",
            max_t=max_t,
            grace_period=min(tune_cfg.asha.grace_period, max_t),
            reduction_factor=tune_cfg.asha.reduction_factor,
        )
    if tune_cfg.scheduler == "pbt":
        seed_pbt(tune_cfg.seed)
        return PopulationBasedTraining(
            time_attr="training_iteration",
            metric=OBJECTIVE,
            mode="max",
            perturbation_interval=tune_cfg.pbt.perturbation_interval,
            hyperparam_mutations=param_space(tune_cfg.search, searched),
            quantile_fraction=tune_cfg.pbt.quantile_fraction,
            resample_probability=tune_cfg.pbt.resample_probability,
            custom_explore_fn=partial(clip_params, space=tune_cfg.search),
            synch=tune_cfg.pbt.synch,
        )
    return FIFOScheduler()


def seed_pbt(seed: int) -> None:
    """Seed what PBT draws from in the driver: Ray's PBT explores with Python's ``random`` and samples
    the initial population with NumPy's global generator. With ``pbt.synch`` every exploit happens at
    the same iteration for all members, so the same seed gives the same weight schedule."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - Ray's samplers read the legacy global generator


def build_search_alg(tune_cfg: TuneConfig) -> Any:
    """Optuna TPE on the composite, multi-objective TPE on the front's task scores
    (``pareto.search``), or None (random draws; always for PBT, which takes no search algorithm)."""
    if tune_cfg.scheduler == "pbt" or tune_cfg.search_alg != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    if tune_cfg.pareto.search:
        tasks = tune_cfg.front_tasks()
        return OptunaSearch(metric=[score_key(t) for t in tasks], mode=["max"] * len(tasks), seed=tune_cfg.seed)
    return OptunaSearch(metric=OBJECTIVE, mode="max", seed=tune_cfg.seed)
