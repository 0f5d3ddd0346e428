"""Data configuration of the tasks: sources, per-task data settings and the held-out splits.

``DataConfig`` is what building task examples (``shoprank.tasks.examples``) needs; the
training config (``shoprank.train.config.TrainConfig``) extends it with the model and the
optimisation settings, and evaluation rebuilds a checkpoint's data from the ``DataConfig``
part of its recorded training config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shoprank.model.registry import TASKS, unknown_tasks


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


class SplitConfig(_Strict):
    """Held-out splits: ``val`` drives early stopping, ``test`` is what ``shoprank eval`` reports."""

    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    max_val_examples: int = Field(2000, ge=10)
    # Seed of the splits, click negatives and validation/evaluation samples; None: the run's
    # ``seed``. Fixing it lets runs that differ only in their training seed share one test set.
    seed: int | None = None
    # Item tasks (category, season): "title" hashes the normalised title (no title on both sides:
    # the honest default), "item" the item id (a random split; shared titles leak). docs/splits.md.
    item_split: Literal["title", "item"] = "title"


LEGACY_ITEM_SPLIT = "item"  # what a recorded config without ``split.item_split`` was trained on


class ItemTextConfig(_Strict):
    """Training-time item text settings (the texts themselves follow ``shoprank.model.text`` recipes)."""

    # Item tasks: the share of training rows whose text drops the attributes (the recipe without
    # them, the text of a catalogue that has none), so the heads do not collapse on titles alone.
    attribute_dropout: float = Field(0.0, ge=0.0, lt=1.0)


class DistillConfig(_Strict):
    """Distillation from the cross-encoder (docs/distillation.md): where its soft labels are and how they
    enter training. ``shoprank distill-labels`` writes ``labels`` (scoring with ``teacher`` the training
    pairs and the hard negatives ``miner`` retrieves); ``shoprank train`` blends them into the relevance and
    click examples (``shoprank.tasks.soft_labels``)."""

    labels: str  # the soft-label directory (``shoprank.tasks.soft_labels``: one parquet per task + manifest)
    teacher: str = "runs/cross/model"  # a ``shoprank train-cross`` OUT/model
    miner: str = "runs/reference/model"  # the bi-encoder whose retrieval mines hard negatives
    tasks: list[Literal["relevance", "click"]] = Field(default_factory=lambda: ["relevance", "click"], min_length=1)
    # a labelled pair's training target: alpha x its label + (1 - alpha) x the teacher's (hard negatives: the teacher's)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    hard_negatives: int = Field(4, ge=0, le=100)  # per training query: the top retrieved items not labelled for it
    search_k: int = Field(20, ge=1, le=1000)  # how deep the miner retrieves before labelled items are dropped
    max_queries: int | None = Field(2000, ge=1)  # training queries labelled per task (a stable hash sample)
    # the catalogue the miner retrieves from: the sampled queries' labelled items plus a stable hash sample of
    # the others, up to this many items per source (None: the whole catalogue)
    max_items: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1, le=4096)  # teacher scoring batch


class DataConfig(_Strict):
    """Sources, tasks and splits: everything that decides which examples a run sees."""

    sources: dict[str, SourceConfig] = Field(min_length=1)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    item_text: ItemTextConfig = Field(default_factory=ItemTextConfig)
    seed: int = 0
    distill: DistillConfig | None = None  # soft labels from the cross-encoder (training rows only)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: dict[str, TaskConfig]) -> dict[str, TaskConfig]:
        unknown = unknown_tasks(v)
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
        return v

    @model_validator(mode="after")
    def _sources_defined(self) -> DataConfig:
        for name, task in self.tasks.items():
            missing = [s for s in task.sources if s not in self.sources]
            if missing:
                raise ValueError(f"tasks.{name}.sources: unknown source(s) {missing}; defined: {sorted(self.sources)}")
        if self.distill is not None and (absent := [t for t in self.distill.tasks if t not in self.tasks]):
            raise ValueError(f"distill.tasks: {absent} not in tasks")
        return self

    @classmethod
    def of(cls, config: dict[str, Any]) -> DataConfig:
        """The data part of a (dumped) training config, e.g. a checkpoint manifest's ``train_config``.

        A config recorded before ``split.item_split`` existed was split by item id: it gets "item".
        ``distill`` is left out: it changes training rows only, never the held-out ones this rebuilds."""
        data = {k: v for k, v in config.items() if k in cls.model_fields and k != "distill"}
        split = dict(data.get("split") or {})
        split.setdefault("item_split", LEGACY_ITEM_SPLIT)
        return cls.model_validate({**data, "split": split})

    @property
    def data_seed(self) -> int:
        """Seed of everything held out (splits, click negatives, val and eval samples)."""
        return self.split.seed if self.split.seed is not None else self.seed

    def resolve_paths(self, base: Path) -> DataConfig:
        """Make relative source paths absolute against ``base`` (the YAML file's directory's parent)."""
        sources = {}

        def fix(p: str | None) -> str | None:
            return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

        for name, s in self.sources.items():
            parts = [q.model_copy(update={"path": fix(q.path)}) for q in s.parts]
            sources[name] = s.model_copy(update={"path": fix(s.path), "parts": parts})
        update: dict[str, Any] = {"sources": sources}
        if self.distill is not None:
            d = self.distill
            update["distill"] = d.model_copy(update={k: fix(getattr(d, k)) for k in ("labels", "teacher", "miner")})
        return self.model_copy(update=update)
