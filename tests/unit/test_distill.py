"""Distillation on tiny models: teacher labels (training rows only), their manifest, and the student's targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from shoprank.errors import DataError
from shoprank.model import ModelConfig, MultiTaskModel
from shoprank.model.checkpoint import save_checkpoint
from shoprank.model.cross_encoder import CrossEncoder, CrossEncoderConfig, load_cross_encoder, save_cross_encoder
from shoprank.tasks.config import DataConfig
from shoprank.tasks.examples import build_task_data
from shoprank.tasks.soft_labels import apply_soft_labels, read_labels, read_manifest
from shoprank.train.config import parse_config
from shoprank.train.distill import label
from shoprank.train.loop import frame_to_arrays, make_batch
from shoprank.train.losses import MultiTaskObjective


def _config(tmp: Path, **distill: object) -> dict:
    return {
        "model": {"encoder": "tiny", "max_length": 24, "hidden": 16},
        "sources": {"synth": {"format": "synthetic", "n_items": 300, "seed": 0}},
        "tasks": {"relevance": {"sources": ["synth"]}, "click": {"sources": ["synth"]}},
        "split": {"val_fraction": 0.15, "test_fraction": 0.15, "max_val_examples": 64},
        "distill": {"labels": str(tmp / "labels"), "teacher": str(tmp / "teacher"), "miner": str(tmp / "miner"),
                    "max_queries": 25, "hard_negatives": 2, "search_k": 8, **distill},
    }  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> object:
    """One torch thread: these tiny models gain nothing from more, and a busy 2-core CI box loses a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    tmp = tmp_path_factory.mktemp("distill")
    save_cross_encoder(CrossEncoder(CrossEncoderConfig(encoder="tiny", max_length=32), seed=1), tmp / "teacher")
    miner = MultiTaskModel(ModelConfig(encoder="tiny", max_length=24, hidden=16, tasks=["relevance", "click"]))
    save_checkpoint(miner, tmp / "miner", trained_tasks=["relevance", "click"])
    raw = _config(tmp)
    manifest = label(parse_config(raw), log=lambda s: None)
    return tmp, raw, manifest


def test_teacher_labels_and_manifest(labelled: tuple[Path, dict, dict]) -> None:
    tmp, raw, manifest = labelled
    cfg = parse_config(raw)
    teacher_sha = json.loads((tmp / "teacher" / "manifest.json").read_text())["weights_sha256"]
    assert read_manifest(tmp / "labels") == manifest
    assert manifest["teacher"]["weights_sha256"] == teacher_sha and manifest["split"]["rows"] == "train"
    assert set(manifest["sources"]) == {"synth"} and set(manifest["tasks"]) == {"relevance", "click"}
    teacher, _ = load_cross_encoder(tmp / "teacher")
    data = build_task_data(cfg.model_copy(update={"distill": None}))
    for task in ("relevance", "click"):
        rows, df = read_labels(tmp / "labels", task), data.examples[task]
        info = manifest["tasks"][task]
        assert rows.height == info["rows"] > 0 and (rows["split"] == "train").all()
        assert info["queries"] == rows["group"].n_unique() <= 25
        assert info["by_origin"]["hard_negative"] > 0
        train = df.filter(pl.col("split") == "train")
        # every query labelled is a training query; no labelled pair is a held-out row
        assert rows["group"].is_in(train["group"].unique().implode()).all()
        if task == "relevance":  # query-hash split: no validation/test query is labelled at all
            held = df.filter(pl.col("split") != "train")["group"].unique().implode()
            assert not rows["group"].is_in(held).any()
        pairs = rows.filter(pl.col("origin") == "pair")
        assert pairs.join(train.select("query", "item_id").unique(), on=["query", "item_id"], how="anti").is_empty()
        negs = rows.filter(pl.col("origin") == "hard_negative")
        assert (
            negs.join(train.select("query", "item_id").unique(), on=["query", "item_id"], how="anti").height
            == negs.height
        )
        assert negs.group_by("group").len()["len"].max() <= 2
        # the stored target is the teacher's score of that (query, item text)
        head = rows.head(5)
        raw_scores = teacher.score(head["query"].to_list(), head["item"].to_list())[task]
        np.testing.assert_allclose(
            head["teacher_logit" if task == "click" else "teacher"], raw_scores, rtol=1e-4, atol=1e-5
        )
    assert ((rows["teacher"] > 0) & (rows["teacher"] < 1)).all()
    before = (tmp / "labels" / "click.parquet").stat().st_mtime_ns  # same inputs: nothing redone
    assert label(cfg, log=lambda s: None)["tasks"] == manifest["tasks"]
    assert (tmp / "labels" / "click.parquet").stat().st_mtime_ns == before


def test_soft_labels_change_training_rows_only(labelled: tuple[Path, dict, dict]) -> None:
    tmp, raw, manifest = labelled
    cfg = parse_config(raw)
    plain = build_task_data(cfg.model_copy(update={"distill": None}))
    distilled = build_task_data(cfg)
    assert DataConfig.of(cfg.model_dump(mode="json")).distill is None  # eval rebuilds held-out rows without it
    for task in ("relevance", "click"):
        for split in ("val", "test"):
            assert distilled.split(task, split).equals(plain.split(task, split))
        n_neg = manifest["tasks"][task]["by_origin"]["hard_negative"]
        assert distilled.split(task, "train").height == plain.split(task, "train").height + n_neg
        counts = distilled.fingerprints["distill"][task]
        assert (
            counts["hard_negatives"] == n_neg and counts["relabelled"] >= manifest["tasks"][task]["by_origin"]["pair"]
        )
    # a relabelled relevance pair's target is the blend alpha * label + (1 - alpha) * teacher
    rows = read_labels(tmp / "labels", "relevance").filter(pl.col("origin") == "pair")
    old = plain.split("relevance", "train").join(rows.select("query", "item_id", "teacher"), on=["query", "item_id"])
    old = old.select("query", "item_id", pl.col("label").alias("old"), "teacher")
    new = distilled.split("relevance", "train").join(old, on=["query", "item_id"])
    assert new.height == old.height > 0
    np.testing.assert_allclose(new["label"], 0.5 * new["old"] + 0.5 * new["teacher"])


def test_a_held_out_row_is_refused(labelled: tuple[Path, dict, dict]) -> None:
    tmp, raw, _ = labelled
    df = build_task_data(parse_config(raw).model_copy(update={"distill": None})).examples["relevance"]
    test_row = df.filter(pl.col("split") == "test").head(1)
    bad = test_row.with_columns(
        pl.lit(0.9).alias("teacher"), pl.lit(0.0).alias("teacher_logit"), pl.lit("pair").alias("origin")
    )
    with pytest.raises(DataError, match="neither a training pair"):
        apply_soft_labels(df, bad, 0.5)
    with pytest.raises(DataError, match="neither a training pair"):
        apply_soft_labels(df, bad.with_columns(pl.lit("hard_negative").alias("origin")), 0.5)


def _gap(objective: MultiTaskObjective, task: str, batch: dict, target: np.ndarray) -> float:
    """Mean |student head output - teacher| (relevance grade, click logit) on the batch."""
    objective.eval()
    with torch.no_grad():
        out = objective.pair_output(task, batch).numpy()
    objective.train()
    return float(np.abs(out - target).mean())


def test_the_distillation_loss_moves_the_student_to_the_teacher(labelled: tuple[Path, dict, dict]) -> None:
    tmp, _, _ = labelled
    torch.manual_seed(0)
    for task in ("relevance", "click"):
        rows = read_labels(tmp / "labels", task).head(8)
        model = MultiTaskModel(ModelConfig(encoder="tiny", max_length=24, hidden=16, tasks=[task]))
        objective = MultiTaskObjective(model, {task: 1.0})
        arrays = frame_to_arrays(rows.with_columns(pl.col("teacher").alias("label")))
        batch = make_batch(model, task, arrays, np.arange(rows.height), torch.device("cpu"))
        target = rows["teacher_logit" if task == "click" else "teacher"].to_numpy()
        before = _gap(objective, task, batch, target)
        opt = torch.optim.Adam(objective.parameters(), lr=5e-3)
        for _ in range(25):
            opt.zero_grad()
            objective(task, batch)[0].backward()
            opt.step()
        assert _gap(objective, task, batch, target) < 0.5 * before, task
