"""The task registry: one :class:`TaskSpec` per task, the only place the task list lives.

Every layer reads it: the model (which heads to build), task data (``shoprank.tasks``: which
side of an example a task reads), training (loss per kind, uncertainty weighting, refit),
evaluation (the evaluator per task, primary metrics), tuning (metrics an objective may name)
and campaign scoring (zero-shot fallbacks). Layers keep their per-task code in tables keyed
by task name (builders in ``shoprank.tasks.examples.BUILDERS``, evaluators in
``shoprank.eval.tasks.EVALUATORS``, losses by kind in ``shoprank.train.losses.LOSSES``) and a
test checks that each table covers exactly the registered tasks.

This module is pure data (no torch, no other shoprank module) so everything can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["classification", "contrastive", "pair_regression", "binary", "regression"]
Side = Literal["query", "item", "pair"]
TextKind = Literal["pair", "item"]  # which item text a head reads (shoprank.model.text)


@dataclass(frozen=True)
class TaskSpec:
    """What one task is: its kind, which text sides it encodes, its loss and metrics."""

    name: str
    kind: Kind
    # "query": query text only; "item": item text only; "pair": query and item
    sides: Side
    loss: str  # the training loss (``shoprank.train.losses.LOSSES`` key)
    metrics: tuple[str, ...]  # what its evaluator reports besides "loss"
    primary: str  # the metric val_score and summaries use
    higher_is_better: bool
    zero_shot: str  # the fallback when the head is not trained
    # pair tasks only: whether the query side is encoded (demand scores an item and a month alone)
    uses_query: bool = True
    lexical: bool = False  # the output adds a linear term on lexical match features
    similarity_fallback: bool = False  # untrained, it is scored by cosine similarity (model.scoring)
    eval_zero_shot: bool = False  # ``shoprank eval`` reports the pretrained encoder's zero-shot next to it
    # the item text its heads read (``shoprank.model.text``): "pair" for query–item heads (and demand,
    # scored on the same item embedding), "item" for item-class heads; None: no item text (intent)
    text_kind: TextKind | None = None

    @property
    def is_class(self) -> bool:
        return self.kind == "classification"

    @property
    def is_pair(self) -> bool:
        """Scored by the pairwise mixer + a tower (relevance, click, demand)."""
        return self.kind in ("pair_regression", "binary", "regression")

    @property
    def is_regression(self) -> bool:
        """Squared-error tasks (uncertainty weighting uses 0.5·exp(-s)·L for them)."""
        return self.kind in ("pair_regression", "regression")

    @property
    def text_column(self) -> str:
        """The examples column a classification task's text comes from."""
        return "query" if self.sides == "query" else "item"


_CLASS_METRICS = ("accuracy", "macro_f1")
SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("intent", "classification", "query", "cross_entropy", _CLASS_METRICS, "accuracy", True,
             "softmax of cosine to the class names' embeddings (shoprank.model.prototypes)", eval_zero_shot=True),
    TaskSpec("retrieval", "contrastive", "pair", "info_nce", ("recall@10", "mrr"), "recall@10", True,
             "cosine similarity of query and item embeddings", eval_zero_shot=True, text_kind="pair"),
    TaskSpec("relevance", "pair_regression", "pair", "mse", ("rmse", "ndcg@10"), "rmse", False,
             "cosine similarity clipped to 0..1", lexical=True, similarity_fallback=True,
             eval_zero_shot=True, text_kind="pair"),
    TaskSpec("click", "binary", "pair", "bce", ("auc", "accuracy"), "auc", True,
             "cosine similarity clipped to 0..1 (campaign: blended with a popularity prior)",
             similarity_fallback=True, text_kind="pair"),
    TaskSpec("category", "classification", "item", "cross_entropy", _CLASS_METRICS, "accuracy", True,
             "softmax of cosine to the class names' embeddings (shoprank.model.prototypes)", text_kind="item"),
    TaskSpec("season", "classification", "item", "cross_entropy", _CLASS_METRICS, "accuracy", True,
             "softmax of cosine to season descriptions (campaign scoring)", text_kind="item"),
    TaskSpec("demand", "regression", "item", "mse", ("rmse",), "rmse", False,
             "a seasonal prior from the season probabilities (campaign scoring)", uses_query=False,
             text_kind="pair"),
)  # fmt: skip
REGISTRY: dict[str, TaskSpec] = {s.name: s for s in SPECS}

TASKS: tuple[str, ...] = tuple(REGISTRY)
CLASS_TASKS: tuple[str, ...] = tuple(s.name for s in SPECS if s.is_class)
PAIR_TASKS: tuple[str, ...] = tuple(s.name for s in SPECS if s.is_pair)
REGRESSION_TASKS: tuple[str, ...] = tuple(s.name for s in SPECS if s.is_regression)
LEXICAL_TASKS: tuple[str, ...] = tuple(s.name for s in SPECS if s.lexical)
SIMILARITY_FALLBACK_TASKS: tuple[str, ...] = tuple(s.name for s in SPECS if s.similarity_fallback)


def spec(task: str) -> TaskSpec:
    """The spec of ``task``; ValueError naming the known tasks if there is none."""
    try:
        return REGISTRY[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}") from None


def unknown_tasks(names: object) -> list[str]:
    """The names in ``names`` that are not registered tasks, sorted."""
    return sorted(set(names) - set(TASKS))  # type: ignore[call-overload]


RANKING_HEADS: tuple[str, ...] = ("click", "relevance")  # the heads that rank a catalogue for a query, best first


def ranking_head(trained: object) -> str:
    """The head that ranks a catalogue for a query: the first trained of :data:`RANKING_HEADS`, else
    ``similarity`` (zero-shot cosine). The model ranking the click blend's features read, in eval and serving."""
    return next((t for t in RANKING_HEADS if t in trained), "similarity")  # type: ignore[operator]
