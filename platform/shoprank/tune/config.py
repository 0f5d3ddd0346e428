"""TuneConfig: the validated YAML that drives ``jobs/tune.py``.

Every field is checked by pydantic and a bad value raises ``ConfigError`` naming the field,
e.g. ``search.high: must be greater than search.low (0.1)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shoprank.model.registry import SPECS, TASKS, unknown_tasks
from shoprank.yamlconfig import read_yaml, validate_mapping

# Metrics ``shoprank.eval.tasks.task_metrics`` reports per task (its spec's, plus the loss);
# an objective may use these.
TASK_METRICS: dict[str, tuple[str, ...]] = {s.name: (*s.metrics, "loss") for s in SPECS}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpace(_Strict):
    """How task loss weights are sampled.

    ``log_uniform``: each weight independently log-uniform in [low, high].
    ``simplex``: weights on a scaled simplex (sum = number of tasks), sampled as a
    flat Dirichlet through per-task uniforms, so only relative weights are searched.
    """

    parameterisation: Literal["log_uniform", "simplex"] = "log_uniform"
    low: float = Field(0.1, gt=0.0)
    high: float = Field(10.0, gt=0.0)
    tasks: list[str] | None = None  # default: every task of the training config

    @model_validator(mode="after")
    def _range(self) -> SearchSpace:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.tasks is not None:
            unknown = unknown_tasks(self.tasks)
            if unknown:
                raise ValueError(f"tasks: unknown task(s) {unknown}; choose from {list(TASKS)}")
            if not self.tasks:
                raise ValueError("tasks: give at least one task, or leave it out for all")
        return self


class ObjectiveMetric(_Strict):
    weight: float = Field(1.0, gt=0.0)
    mode: Literal["max", "min"] = "max"


class Objective(_Strict):
    """A composite of validation metrics: Σ w·norm(m) / Σ w, where ``max`` metrics enter as
    they are and ``min`` metrics (RMSE, loss on 0..1 labels) enter as 1 − value."""

    metrics: dict[str, ObjectiveMetric] = Field(min_length=1)
    primary: str

    @model_validator(mode="after")
    def _known(self) -> Objective:
        for name in self.metrics:
            task, _, metric = name.partition("/")
            if task not in TASK_METRICS or metric not in TASK_METRICS[task]:
                known = [f"{t}/{m}" for t, ms in TASK_METRICS.items() for m in ms]
                raise ValueError(f"metrics.{name}: unknown metric; use task/metric, one of {known}")
        if self.primary not in self.metrics:
            raise ValueError(f"primary: {self.primary!r} is not one of the objective's metrics {list(self.metrics)}")
        return self


class AshaConfig(_Strict):
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, ge=2.0)


class PbtConfig(_Strict):
    """Population-based training: every ``perturbation_interval`` epochs the bottom
    ``quantile_fraction`` of the population copies a top trial's checkpoint and perturbs its
    weights (×0.8/×1.2, or a fresh draw with ``resample_probability``)."""

    perturbation_interval: int = Field(1, ge=1)
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    # synchronous: every member reaches the interval before the bottom quantile exploits the top. The
    # asynchronous form skips an exploit whenever the chosen donor has not yet been checkpointed as a
    # top member, which in small populations of short trials is most of the time.
    synch: bool = True


class ParetoConfig(_Strict):
    """The front the report draws: one axis per task, a task's score being the weighted mean of
    the objective's (normalised) metrics of that task. ``search: true`` makes Optuna search the
    front itself (multi-objective TPE over these scores) instead of the composite."""

    tasks: list[str] | None = None  # default: every task the objective names
    search: bool = False


class TuneConfig(_Strict):
    """One sweep: which training config, how to search, how to judge, where to write."""

    train_config: str
    name: str = Field("sweep", pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: str = "runs/tune"
    num_samples: int = Field(8, ge=1, le=10_000)
    max_concurrent_trials: int = Field(2, ge=1, le=1024)
    cpus_per_trial: float = Field(1.0, gt=0.0)
    gpus_per_trial: float = Field(0.0, ge=0.0)
    search: SearchSpace = Field(default_factory=SearchSpace)
    search_alg: Literal["optuna", "random"] = "optuna"
    asha: AshaConfig = Field(default_factory=AshaConfig)
    # asha: Optuna/random proposals, weak trials stopped early; pbt: a population whose weights
    # mutate during training (no search algorithm); fifo: every trial the full budget
    scheduler: Literal["asha", "pbt", "fifo"] = "asha"
    pbt: PbtConfig = Field(default_factory=PbtConfig)
    objective: Objective
    pareto: ParetoConfig = Field(default_factory=ParetoConfig)
    baselines: list[Literal["equal", "uncertainty"]] = Field(default_factory=lambda: ["equal", "uncertainty"])
    # equal weights on this many seeds (seed, seed+1, ...): the spread every tuned gain is judged against
    baseline_seeds: int = Field(1, ge=1, le=32)
    # warm start: every trial (and baseline) begins from this checkpoint's weights; overrides the
    # training config's ``init_from``. freeze_encoder: only the heads and towers train.
    init_from: str | None = None
    freeze_encoder: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        tasks = self.objective_tasks()
        if self.pareto.tasks is not None:
            stray = [t for t in self.pareto.tasks if t not in tasks]
            if stray or len(self.pareto.tasks) < 2:
                got = stray or self.pareto.tasks
                raise ValueError(f"pareto.tasks: give at least two of the objective's tasks {tasks} (got {got})")
        if self.pareto.search and (self.scheduler == "pbt" or self.search_alg != "optuna"):
            raise ValueError("pareto.search: needs search_alg: optuna and scheduler asha or fifo (PBT has one metric)")
        if self.pareto.search and len(self.front_tasks()) < 2:
            raise ValueError(f"pareto.search: the objective names only {tasks}; a front needs two tasks")
        if self.baseline_seeds > 1 and "equal" not in self.baselines:
            raise ValueError("baseline_seeds: the seed spread is measured on equal weights; add 'equal' to baselines")
        return self

    def objective_tasks(self) -> list[str]:
        """The tasks the objective's metrics belong to, in the objective's order."""
        return list(dict.fromkeys(name.partition("/")[0] for name in self.objective.metrics))

    def front_tasks(self) -> list[str]:
        """The axes of the Pareto front."""
        return list(self.pareto.tasks) if self.pareto.tasks is not None else self.objective_tasks()


def parse_tune_config(data: object, source: str = "tune config") -> TuneConfig:
    """Validate a mapping; raise ConfigError naming each bad field."""
    return validate_mapping(TuneConfig, data, source)


def load_tune_config(path: str | Path) -> TuneConfig:
    """Load and validate a sweep YAML."""
    return parse_tune_config(read_yaml(path, "tune config"), str(path))
