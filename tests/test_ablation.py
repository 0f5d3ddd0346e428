"""jobs/ablation.py: variants keep the budget, the comparison counts wins, a tiny real run resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shoprank.errors import ShoprankError
from shoprank.train.config import load_config

from jobs import ablation

REPO = Path(__file__).resolve().parents[1]


def test_variants_share_the_budget_and_single_task_keeps_only_its_sources():
    cfg = load_config(REPO / "configs" / "ablation.yaml", base=REPO)
    vs = ablation.variants(cfg, ["season", "click"])
    assert list(vs) == [*ablation.MULTI, "single_task_season", "single_task_click"]
    assert vs["multi_task_mmoe"].model.architecture == "mmoe"
    assert vs["multi_task_shared_bottom"].model.architecture == "shared_bottom"
    for v in vs.values():
        assert (v.epochs, v.steps_per_epoch, v.batch_size) == (cfg.epochs, cfg.steps_per_epoch, cfg.batch_size)
        assert v.head_refit == cfg.head_refit
    assert list(vs["single_task_season"].tasks) == ["season"]
    assert set(vs["single_task_season"].sources) == {"fashion"}
    assert set(vs["single_task_click"].sources) == {"bestbuy"}
    with pytest.raises(ShoprankError, match="'nope'"):
        ablation.variants(cfg, ["nope"])
    only = ablation.variants(cfg, ["click"], multi=["multi_task_shared_bottom"], schedule="all")
    assert list(only) == ["multi_task_shared_bottom", "single_task_click"]
    assert only["multi_task_shared_bottom"].schedule == "all"
    assert only["multi_task_shared_bottom"].steps_per_epoch == cfg.steps_per_epoch
    heads = load_config(REPO / "configs" / "ablation_encoder_grad.yaml", base=REPO)
    vs = ablation.variants(heads, ["season"], multi=["multi_task_shared_bottom"])
    assert vs["multi_task_shared_bottom"].tasks["season"].encoder_grad == 0.0
    assert vs["single_task_season"].tasks["season"].encoder_grad == 1.0  # alone, a task trains the encoder


def test_per_task_steps_gives_each_task_its_single_task_steps():
    from shoprank.train.sampler import step_tasks

    cfg = load_config(REPO / "configs" / "ablation.yaml", base=REPO)
    vs = ablation.variants(cfg, ["click"], multi=["multi_task_shared_bottom"], schedule="round_robin",
                           per_task_steps=True)  # fmt: skip
    multi, single = vs["multi_task_shared_bottom"], vs["single_task_click"]
    n = len(cfg.tasks)
    assert (multi.steps_per_epoch, multi.warmup_steps) == (cfg.steps_per_epoch * n, cfg.warmup_steps * n)
    assert (single.steps_per_epoch, single.warmup_steps) == (cfg.steps_per_epoch, cfg.warmup_steps)
    steps = step_tasks({t: 100 for t in cfg.tasks}, multi.schedule, multi.steps_per_epoch, 0, 1)
    per_task = {t: sum(1 for s in steps if s == (t,)) for t in cfg.tasks}
    assert per_task == {t: single.steps_per_epoch for t in cfg.tasks}
    with pytest.raises(ShoprankError, match="round_robin"):
        ablation.variants(cfg, ["click"], schedule="all", per_task_steps=True)


def test_comparison_counts_a_task_only_when_every_metric_wins():
    nan = float("nan")
    results = {
        "multi_task_shared_bottom": {"season/f/accuracy": 0.9, "relevance/h/rmse": 0.20, "relevance/h/ndcg@10": 0.8},
        "multi_task_mmoe": {"season/f/accuracy": 0.7, "relevance/h/rmse": 0.30, "relevance/h/ndcg@10": 0.9},
        "single_task_season": {"season/f/accuracy": 0.8},
        "single_task_relevance": {"relevance/h/rmse": 0.25, "relevance/h/ndcg@10": 0.85},
    }
    results["multi_task_shared_bottom"]["season/b/accuracy"] = results["single_task_season"]["season/b/accuracy"] = 1.0
    rows, summary = ablation.comparison(results)
    by = {r["metric"]: r for r in rows}
    assert by["relevance/h/rmse"]["multi_task_shared_bottom beats single"] == "yes"  # lower rmse wins
    assert by["relevance/h/ndcg@10"]["multi_task_shared_bottom beats single"] == "no"
    assert by["season/b/accuracy"]["multi_task_shared_bottom beats single"] == "tie"
    assert summary["multi_task_shared_bottom"]["tasks_won"] == ["season"]  # the tie does not spoil the win
    assert summary["multi_task_shared_bottom"]["tasks_lost_or_mixed"] == ["relevance"]
    assert summary["multi_task_mmoe"]["tasks_won"] == []
    assert summary["architecture_better_on"] == {"shared_bottom": 2, "mmoe": 1}
    assert not ablation.better("x/y/accuracy", nan, 0.5)
    del results["multi_task_mmoe"]  # only one multi-task variant ran: no MMoE column, no architecture count
    rows, summary = ablation.comparison(results)
    assert set(summary) == {"multi_task_shared_bottom"} and "multi_task_mmoe beats single" not in rows[0]


def test_tiny_ablation_runs_and_resumes(ray_local, tmp_path, capsys):
    out = tmp_path / "abl"
    argv = ["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--single", "season",
            "--workers", "1", "--max-eval-rows", "60"]  # fmt: skip
    assert ablation.main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert set(report["results"]) == {*ablation.MULTI, "single_task_season"}
    assert set(report["results"]["single_task_season"]) == {"season/synth/accuracy", "season/synth/macro_f1"}
    assert not math.isnan(report["results"]["multi_task_mmoe"]["relevance/synth/rmse"])
    md = (out / "ablation.md").read_text()
    assert "| season/synth/accuracy |" in md and "beats single-task on" in md
    stamp = (out / "single_task_season" / "eval.json").stat().st_mtime_ns
    capsys.readouterr()
    assert ablation.main(argv) == 0  # rerun: every variant already evaluated, nothing retrained
    assert "already evaluated" in capsys.readouterr().out
    assert (out / "single_task_season" / "eval.json").stat().st_mtime_ns == stamp
