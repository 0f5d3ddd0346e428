"""TrainConfig: the validated YAML that drives ``jobs/train.py`` (and the Ray Tune sweep).

Every field is checked by pydantic; unknown fields are rejected, and a bad value raises
``ConfigError`` naming the field path, e.g. ``tasks.relevance.weight: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shoprank.model.multitask import ModelConfig
from shoprank.model.registry import TASKS
from shoprank.tasks.config import DataConfig, TaskConfig
from shoprank.yamlconfig import read_yaml, validate_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EarlyStopping(_Strict):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(2, ge=0)  # 0 switches early stopping off
    min_delta: float = Field(0.0, ge=0.0)


class HeadRefit(_Strict):
    """Re-fit the classification heads on frozen embeddings after training (see shoprank.train.refit)."""

    enabled: bool = False
    max_examples: int = Field(6000, ge=10)
    regression_max_examples: int = Field(20_000, ge=10)  # relevance/demand towers + lexical basis
    steps: int = Field(300, ge=1)
    lr: float = Field(0.05, gt=0.0, le=10.0)


class TrainConfig(DataConfig):
    """Everything one training run needs (the data part, ``sources``/``tasks``/``split``/``seed``,
    is ``DataConfig``'s); ``model.tasks`` follows the keys of ``tasks``."""

    model: ModelConfig = Field(default_factory=ModelConfig)
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
    head_refit: HeadRefit = Field(default_factory=HeadRefit)
    num_workers: int = Field(1, ge=1, le=256)
    use_gpu: bool | Literal["auto"] = "auto"
    max_failures: int = Field(0, ge=-1)
    # issue 19 (tune): warm start from a fine-tuned checkpoint's weights (not its optimizer state or
    # epoch); the architecture and label maps must match. A resume (same run) takes precedence.
    init_from: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.grad_surgery != "none" and self.schedule != "all":
            raise ValueError(f"grad_surgery: {self.grad_surgery!r} needs schedule: all (got {self.schedule!r})")
        tasks = [t for t in TASKS if t in self.tasks]
        if self.model.tasks != tasks:
            self.model = self.model.model_copy(update={"tasks": tasks})
        return self

    def weights(self) -> dict[str, float]:
        return {t: c.weight for t, c in self.tasks.items()}

    def with_tasks(self, tasks: dict[str, TaskConfig]) -> TrainConfig:
        """The same run with only ``tasks`` and the sources they read (validated anew)."""
        used = {s for t in tasks.values() for s in t.sources}
        data = self.model_dump(mode="json")
        data["tasks"] = {k: v.model_dump(mode="json") for k, v in tasks.items()}
        data["sources"] = {k: v for k, v in data["sources"].items() if k in used}
        return TrainConfig.model_validate(data)  # the validator keeps model.tasks in step

    def resolve_paths(self, base: Path) -> TrainConfig:
        """The data paths', and (issue 19) ``init_from``'s, absolute against ``base``."""
        cfg: TrainConfig = super().resolve_paths(base)  # type: ignore[assignment]
        if cfg.init_from and not Path(cfg.init_from).is_absolute():
            cfg = cfg.model_copy(update={"init_from": str((base / cfg.init_from).resolve())})
        return cfg

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
    return cfg.resolve_paths(Path(base) if base is not None else Path.cwd())  # type: ignore[return-value]
