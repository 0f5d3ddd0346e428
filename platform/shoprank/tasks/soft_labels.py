"""Soft labels from the cross-encoder teacher: the label directory and how it enters training rows.

A label directory (written by ``shoprank distill-labels``, :mod:`shoprank.train.distill`) holds one
``<task>.parquet`` per distilled task (``relevance``, ``click``) and ``manifest.json`` (format, the teacher's
and the miner's weights hashes, the sources' fingerprints, the split, counts). Each row is an example of
the task (``EXAMPLE_SCHEMA``'s columns, ``split`` always ``train``) plus:

- ``teacher``: the teacher's target on the student head's scale (relevance: the cross-encoder's 0..1 grade;
  click: its click probability, the sigmoid of its logit), ``teacher_logit`` the raw head output;
- ``origin``: ``pair`` (a training pair of the source: a judged Home Depot pair, a Best Buy click or sampled
  negative) or ``hard_negative`` (an item the bi-encoder retrieves for a training query that is not
  labelled for it).

:func:`apply_soft_labels` turns a task's examples into the distillation targets, with no new head and no new
loss: a labelled pair's target becomes ``alpha * label + (1 - alpha) * teacher`` (for the relevance head's
squared error and the click head's binary cross-entropy, both linear in the target, this is exactly
``alpha * L(label) + (1 - alpha) * L(teacher)``), and the hard negatives join as rows whose target is the
teacher's. Only training rows are touched: a pair must match a training row, a hard negative's query must
have training rows, anything else in the file is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.errors import ConfigError, DataError

FORMAT = "shoprank-soft-labels"
MANIFEST = "manifest.json"
ORIGINS = ("pair", "hard_negative")
EXTRA_COLUMNS: dict[str, pl.DataType] = {"teacher": pl.Float64(), "teacher_logit": pl.Float64(), "origin": pl.Utf8()}


def labels_path(directory: str | Path, task: str) -> Path:
    return Path(directory) / f"{task}.parquet"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The label directory's manifest; ConfigError saying how to make it when there is none."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"distill.labels: no soft labels at {directory} (run `shoprank distill-labels --config CONFIG` first)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a soft-label manifest (format {manifest.get('format')!r})")
    return manifest


def read_labels(directory: str | Path, task: str) -> pl.DataFrame:
    """One task's soft-label rows (ConfigError when the directory has none for it)."""
    manifest = read_manifest(directory)
    path = labels_path(directory, task)
    if task not in manifest.get("tasks", {}) or not path.is_file():
        raise ConfigError(f"distill.labels: {directory} has no soft labels for task {task!r}")
    return pl.read_parquet(path)


def apply_soft_labels(df: pl.DataFrame, labels: pl.DataFrame, alpha: float) -> tuple[pl.DataFrame, dict[str, int]]:
    """A task's examples (all splits) with the soft labels blended into its training rows and the hard
    negatives appended (see the module docstring); and counts: training rows ``relabelled``, ``hard_negatives``
    added. DataError if ``labels`` holds a row that is not a training pair or a training query's negative."""
    train, rest = df.filter(pl.col("split") == "train"), df.filter(pl.col("split") != "train")
    keys = train.select("query", "item_id").unique()
    pairs = labels.filter(pl.col("origin") == "pair").unique(["query", "item_id"], keep="first")
    negs = labels.filter(pl.col("origin") == "hard_negative").unique(["query", "item_id"], keep="first")
    stray = pairs.join(keys, on=["query", "item_id"], how="anti").height
    stray += negs.filter(~pl.col("group").is_in(train["group"].unique().implode())).height
    if stray:
        raise DataError(f"soft labels: {stray} row(s) are neither a training pair nor a training query's negative")
    negs = negs.join(keys, on=["query", "item_id"], how="anti")
    teacher = pairs.select("query", "item_id", pl.col("teacher").alias("_teacher"))
    train = train.join(teacher, on=["query", "item_id"], how="left", maintain_order="left")
    n_pairs = int(train["_teacher"].is_not_null().sum())
    blended = alpha * pl.col("label") + (1.0 - alpha) * pl.col("_teacher")
    train = train.with_columns(
        pl.when(pl.col("_teacher").is_null()).then(pl.col("label")).otherwise(blended).alias("label")
    ).drop("_teacher")
    added = negs.with_columns(pl.col("teacher").alias("label"), pl.lit("train").alias("split")).select(df.columns)
    out = pl.concat([train, added.cast(df.schema), rest]).sort(["split", "group", "item_id", "query", "month", "label"])
    return out, {"relabelled": n_pairs, "hard_negatives": added.height}


def distill_fingerprint(directory: str | Path) -> dict[str, Any]:
    """What a trained checkpoint's manifest records of the soft labels it was trained on."""
    m = read_manifest(directory)
    rows = {t: v.get("rows") for t, v in m.get("tasks", {}).items()}
    teacher = m.get("teacher", {}).get("weights_sha256")
    return {"path": str(directory), "teacher_sha256": teacher, "created_at": m.get("created_at"), "rows": rows}
