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
    objective: Objective
    baselines: list[Literal["equal", "uncertainty"]] = Field(default_factory=lambda: ["equal", "uncertainty"])
    seed: int = 0


def parse_tune_config(data: object, source: str = "tune config") -> TuneConfig:
    """Validate a mapping; raise ConfigError naming each bad field."""
    return validate_mapping(TuneConfig, data, source)


def load_tune_config(path: str | Path) -> TuneConfig:
    """Load and validate a sweep YAML."""
    return parse_tune_config(read_yaml(path, "tune config"), str(path))
