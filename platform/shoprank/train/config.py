"""TrainConfig: the validated YAML that drives ``jobs/train.py`` (and the Ray Tune sweep).

Every field is checked by pydantic; unknown fields are rejected, and a bad value raises
``ConfigError`` naming the field path, e.g. ``tasks.relevance.weight: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shoprank.model.multitask import TASKS, ModelConfig
from shoprank.yamlconfig import read_yaml, validate_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartConfig(_Strict):
    """One file or directory read by ``shoprank.data.loaders.load(path, format)``."""

    format: str = Field(min_length=1)
    path: str | None = None


class SourceConfig(_Strict):
    """One data source: a file in a known format, several files whose frames are combined
    (``parts``, e.g. Best Buy clicks + products), or ``format: synthetic``."""

    format: str | None = None
    path: str | None = None
    parts: list[PartConfig] = Field(default_factory=list)
    n_items: int = Field(2000, ge=10)  # synthetic only
    seed: int = 0  # synthetic only
    max_rows: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if (self.format is None) == (not self.parts):
            raise ValueError("give either format (+ path) or parts, not both and not neither")
        if self.format not in (None, "synthetic") and not self.path:
            raise ValueError(f"format {self.format!r} needs a path")
        return self

    def all_parts(self) -> list[PartConfig]:
        return self.parts or [PartConfig(format=self.format or "synthetic", path=self.path)]


class TaskConfig(_Strict):
    """Per-task data and loss weight."""

    sources: list[str] = Field(min_length=1)
    weight: float = Field(1.0, gt=0.0)
    sample_weight: float = Field(1.0, gt=0.0)  # used by the "weighted" schedule
    max_examples: int | None = Field(None, ge=1)
    max_classes: int = Field(200, ge=2)  # classification tasks: keep the most frequent classes
    min_class_count: int = Field(3, ge=1)
    negatives: int = Field(3, ge=0, le=50)  # click: sampled negatives per click
    # How much of this task's gradient reaches the shared encoder (1: all; 0: the task trains
    # only its head, on the embeddings the other tasks shape).
    encoder_grad: float = Field(1.0, ge=0.0, le=1.0)


class EarlyStopping(_Strict):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(2, ge=0)  # 0 switches early stopping off
    min_delta: float = Field(0.0, ge=0.0)


class SplitConfig(_Strict):
    """Held-out splits: ``val`` drives early stopping, ``test`` is what ``shoprank eval`` reports."""

    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    max_val_examples: int = Field(2000, ge=10)
    # Seed of the splits, click negatives and validation/evaluation samples; None: the run's
    # ``seed``. Fixing it lets runs that differ only in their training seed share one test set.
    seed: int | None = None


class HeadRefit(_Strict):
    """Re-fit the classification heads on frozen embeddings after training (see shoprank.train.refit)."""

    enabled: bool = False
    max_examples: int = Field(6000, ge=10)
    regression_max_examples: int = Field(20_000, ge=10)  # relevance/demand towers + lexical basis
    steps: int = Field(300, ge=1)
    lr: float = Field(0.05, gt=0.0, le=10.0)


class TrainConfig(_Strict):
    """Everything one training run needs; ``model.tasks`` follows the keys of ``tasks``."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    sources: dict[str, SourceConfig] = Field(min_length=1)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    # one task per step (by data size, in turn, or by sample_weight), or "all": every task each step
    schedule: Literal["proportional", "round_robin", "weighted", "all"] = "proportional"
    # how an "all" step combines its task gradients: their sum, or PCGrad's conflict-free sum
    grad_surgery: Literal["none", "pcgrad"] = "none"
    epochs: int = Field(3, ge=1, le=1000)
    steps_per_epoch: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-5, gt=0.0, le=1.0)
    head_lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float = Field(1.0, gt=0.0)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    split: SplitConfig = Field(default_factory=SplitConfig)
    head_refit: HeadRefit = Field(default_factory=HeadRefit)
    num_workers: int = Field(1, ge=1, le=256)
    use_gpu: bool | Literal["auto"] = "auto"
    max_failures: int = Field(0, ge=-1)
    seed: int = 0

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: dict[str, TaskConfig]) -> dict[str, TaskConfig]:
        unknown = sorted(set(v) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        for name, task in self.tasks.items():
            missing = [s for s in task.sources if s not in self.sources]
            if missing:
                raise ValueError(f"tasks.{name}.sources: unknown source(s) {missing}; defined: {sorted(self.sources)}")
        if self.grad_surgery != "none" and self.schedule != "all":
            raise ValueError(f"grad_surgery: {self.grad_surgery!r} needs schedule: all (got {self.schedule!r})")
        tasks = [t for t in TASKS if t in self.tasks]
        if self.model.tasks != tasks:
            self.model = self.model.model_copy(update={"tasks": tasks})
        return self

    def resolve_paths(self, base: Path) -> TrainConfig:
        """Make relative source paths absolute against ``base`` (the YAML file's directory's parent)."""
        sources = {}

        def fix(p: str | None) -> str | None:
            return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

        for name, s in self.sources.items():
            parts = [q.model_copy(update={"path": fix(q.path)}) for q in s.parts]
            sources[name] = s.model_copy(update={"path": fix(s.path), "parts": parts})
        return self.model_copy(update={"sources": sources})

    def weights(self) -> dict[str, float]:
        return {t: c.weight for t, c in self.tasks.items()}

    def with_tasks(self, tasks: dict[str, TaskConfig]) -> TrainConfig:
        """The same run with only ``tasks`` and the sources they read (validated anew)."""
        used = {s for t in tasks.values() for s in t.sources}
        data = self.model_dump(mode="json")
        data["tasks"] = {k: v.model_dump(mode="json") for k, v in tasks.items()}
        data["sources"] = {k: v for k, v in data["sources"].items() if k in used}
        return TrainConfig.model_validate(data)  # the validator keeps model.tasks in step

    @property
    def data_seed(self) -> int:
        """Seed of everything held out (splits, click negatives, val and eval samples)."""
        return self.split.seed if self.split.seed is not None else self.seed

    def encoder_grads(self) -> dict[str, float]:
        """Tasks whose gradient into the encoder is scaled (``encoder_grad`` < 1)."""
        return {t: c.encoder_grad for t, c in self.tasks.items() if c.encoder_grad < 1.0}


def parse_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a dict; raise ConfigError naming each bad field."""
    return validate_mapping(TrainConfig, data, source)


def load_config(path: str | Path, base: str | Path | None = None) -> TrainConfig:
    """Load and validate a YAML config; relative data paths resolve against ``base``
    (default: the current directory, i.e. the repository root when run as documented)."""
    cfg = parse_config(read_yaml(path, "config"), str(path))
    return cfg.resolve_paths(Path(base) if base is not None else Path.cwd())
