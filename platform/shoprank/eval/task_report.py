"""The test-split report of each task kind: the model's metrics next to their baselines.

``shoprank eval`` (``shoprank.eval.runner.evaluate_checkpoint``) calls :func:`task_rows` for
every trained task and source; ``REPORT_ROWS`` holds one row builder per task kind
(``shoprank.model.registry``): majority class and zero-shot prototypes for classification,
the pretrained encoder for retrieval, BM25 and zero-shot cosine for graded relevance, the
training mean, the seasonal-naive profile and uniform shares for demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from shoprank.data.splits import title_key
from shoprank.eval import metrics as M
from shoprank.eval.baselines import score_pairs_bm25
from shoprank.eval.tasks import class_logits, pair_raw, retrieval_metrics
from shoprank.model.embeddings import EmbeddingCache, embed_unique
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.prototypes import ZeroShotClasses, class_name_text
from shoprank.model.registry import TaskSpec
from shoprank.model.text import ITEM, title_of
from shoprank.tasks.examples import split_kind

UNSEEN_TITLES = "item:unseen_titles"  # the split of a random item split's test items with titles unseen in training


def row(task: str, source: str, metric: str, split: str | None = None, **values: float) -> dict[str, Any]:
    """One report row: task, source, metric, the split the figure comes from (None: the task's usual one,
    :func:`split_kind`) and a column per system."""
    head = {"task": task, "source": source, "metric": metric, "split": split or split_kind(task)}
    return {**head, **{k: float(v) for k, v in values.items()}}


def _titles(df: pl.DataFrame) -> pl.Series:
    """Each row's normalised title (the split key of a title split)."""
    return (
        pl.Series([title_of(t) for t in df["item"].to_list()], dtype=pl.Utf8)
        .to_frame("t")
        .select(title_key(pl.col("t")))["t"]
    )


def _item_views(
    model: MultiTaskModel,
    sp: TaskSpec,
    source: str,
    split: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    base: np.ndarray,
    caches: Caches,
) -> list[dict[str, Any]]:
    """Item tasks' extra views: unseen titles (under a random item split) and titles only."""
    y = test["label"].to_numpy().astype(int)
    rows = []
    if split == "item":
        unseen = ~_titles(test).is_in(_titles(train).unique().implode()).to_numpy()
        if unseen.any():
            pred = class_logits(model, sp.name, test.filter(pl.Series(unseen)), caches.model).argmax(1)
            acc = {"model": M.accuracy(y[unseen], pred), "majority": M.accuracy(y[unseen], base[unseen])}
            rows.append(row(sp.name, source, "accuracy_unseen_titles", UNSEEN_TITLES, **acc))
    titles = test.with_columns(pl.Series(sp.text_column, [title_of(t) for t in test[sp.text_column].to_list()]))
    pred = class_logits(model, sp.name, titles, caches.model).argmax(1)
    rows.append(
        row(sp.name, source, "accuracy_titles_only", split, model=M.accuracy(y, pred), majority=M.accuracy(y, base))
    )
    return rows


@dataclass
class Caches:
    """The evaluated model's and the zero-shot baseline's embedding caches (weights are fixed)."""

    model: EmbeddingCache
    zero_shot: EmbeddingCache | None = None


RowsFn = Callable[
    [MultiTaskModel, "MultiTaskModel | None", TaskSpec, str, pl.DataFrame, pl.DataFrame, Caches],
    list[dict[str, Any]],
]


def _classification_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    """Accuracy and macro F1 against the majority class (and the zero-shot prototypes)."""
    y = test["label"].to_numpy().astype(int)
    pred = class_logits(model, sp.name, test, caches.model).argmax(1)
    majority = int(train["label"].mode().sort()[0]) if train.height else 0
    base = np.full_like(pred, majority)
    split = split_kind(sp.name, test)
    rows = [
        row(sp.name, source, "accuracy", split, model=M.accuracy(y, pred), majority=M.accuracy(y, base)),
        row(sp.name, source, "macro_f1", split, model=M.macro_f1(y, pred), majority=M.macro_f1(y, base)),
    ]
    if zs is not None and sp.eval_zero_shot:
        names = [class_name_text(n) for n in model.label_maps[sp.name]]
        emb = embed_unique(zs, test[sp.text_column].to_list(), caches.zero_shot)
        zpred = ZeroShotClasses(zs, names, temperature=1.0).predict(emb)  # arg-max: no temperature
        rows[0]["zero_shot"] = M.accuracy(y, zpred)
        rows[1]["zero_shot"] = M.macro_f1(y, zpred)
    if sp.text_kind == ITEM:
        rows.extend(_item_views(model, sp, source, split, test, train, base, caches))
    return rows


def _contrastive_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    m = retrieval_metrics(model, test, caches.model)
    z = retrieval_metrics(zs, test, caches.zero_shot) if zs is not None and sp.eval_zero_shot else {}
    return [row(sp.name, source, k, model=m[k], **({"zero_shot": z[k]} if z else {})) for k in ("recall@10", "mrr")]


def _binary_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    p = 1.0 / (1.0 + np.exp(-pair_raw(model, sp.name, test, caches.model)))
    return [row(sp.name, source, "auc", model=M.roc_auc(test["label"].to_numpy(), p))]


def _pair_regression_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    """RMSE against the training mean; nDCG@10 against BM25 (and zero-shot cosine)."""
    y = test["label"].to_numpy()
    pred = np.clip(pair_raw(model, sp.name, test, caches.model), 0.0, 1.0)
    mean = float(train["label"].mean()) if train.height else 0.5
    rows = [row(sp.name, source, "rmse", model=M.rmse(y, pred), mean_predictor=M.rmse(y, np.full_like(y, mean)))]
    g = test["group"].to_numpy()
    extra = {"bm25": M.mean_ndcg_at_k(g, y, score_pairs_bm25(test["query"].to_list(), test["item"].to_list()), 10)}
    if zs is not None and sp.eval_zero_shot:
        qe = embed_unique(zs, test["query"].to_list(), caches.zero_shot)
        ie = embed_unique(zs, test["item"].to_list(), caches.zero_shot)
        extra["zero_shot"] = M.mean_ndcg_at_k(g, y, (qe * ie).sum(1), 10)
    rows.append(row(sp.name, source, "ndcg@10", model=M.mean_ndcg_at_k(g, y, pred, 10), **extra))
    return rows


def _regression_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    """RMSE against the seasonal naive profile (mean share per month) and the uniform 1/12."""
    y = test["label"].to_numpy()
    pred = np.clip(pair_raw(model, sp.name, test, caches.model), 0.0, 1.0)
    prof = train.group_by("month").agg(pl.col("label").mean()).sort("month")
    prof_map = dict(zip(prof["month"].to_list(), prof["label"].to_list(), strict=True))
    naive = np.array([prof_map.get(m, 1.0 / 12) for m in test["month"].to_list()])
    return [
        row(
            sp.name,
            source,
            "rmse",
            model=M.rmse(y, pred),
            seasonal_naive=M.rmse(y, naive),
            uniform=M.rmse(y, np.full_like(y, 1.0 / 12)),
        )
    ]


REPORT_ROWS: dict[str, RowsFn] = {
    "classification": _classification_rows,
    "contrastive": _contrastive_rows,
    "binary": _binary_rows,
    "pair_regression": _pair_regression_rows,
    "regression": _regression_rows,
}  # by task kind (shoprank.model.registry): the test-split report rows with their baselines


def task_rows(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    sp: TaskSpec,
    source: str,
    test: pl.DataFrame,
    train: pl.DataFrame,
    caches: Caches,
) -> list[dict[str, Any]]:
    """One task's rows on one source's test split (``train``: the same source's training split)."""
    return REPORT_ROWS[sp.kind](model, zs, sp, source, test, train, caches)
