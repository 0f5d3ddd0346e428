"""jobs/ablation.py: variants keep the budget, the comparison counts wins, a tiny real run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shoprank.errors import ShoprankError
from shoprank.train import ablation
from shoprank.train.config import load_config

REPO = Path(__file__).resolve().parents[2]


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
    pc = ablation.variants(cfg, ["click"], multi=["multi_task_shared_bottom"], schedule="all", grad_surgery="pcgrad")
    assert pc["multi_task_shared_bottom"].grad_surgery == "pcgrad"
    assert pc["single_task_click"].grad_surgery == "none"  # one task per step: nothing to combine
    with pytest.raises(ShoprankError, match="--schedule all"):
        ablation.variants(cfg, ["click"], schedule="round_robin", grad_surgery="pcgrad")
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


def test_seed_comparison_wins_only_when_every_seed_is_separated():
    def run(multi: float, single: float, rmse_m: float, rmse_s: float) -> dict:
        return {
            "multi_task_shared_bottom": {
                "season/f/accuracy": multi,
                "relevance/h/rmse": rmse_m,
                "intent/b/accuracy": 0.99,
                "intent/w/accuracy": 0.5,
            },  # fmt: skip
            "single_task_season": {"season/f/accuracy": single},
            "single_task_relevance": {"relevance/h/rmse": rmse_s},
            "single_task_intent": {"intent/b/accuracy": 1.0, "intent/w/accuracy": 0.1},
        }

    # season: every multi-task seed above every single-task seed; relevance: one seed overlaps
    runs = [run(0.82, 0.80, 0.20, 0.25), run(0.83, 0.81, 0.26, 0.24), run(0.815, 0.805, 0.21, 0.23)]
    rows, summary = ablation.seed_comparison(runs)
    by = {r["metric"]: r for r in rows}
    assert by["season/f/accuracy"]["multi_task_shared_bottom vs single"] == "better (separated)"
    assert by["season/f/accuracy"]["multi_task_shared_bottom"] == "0.8217 ± 0.0076"
    assert by["relevance/h/rmse"]["multi_task_shared_bottom vs single"] == "overlap"  # 0.26 > 0.23
    s = summary["multi_task_shared_bottom"]
    assert s["tasks_won"] == ["season"] and s["tasks_mixed"] == ["intent"]  # b worse, w better
    assert s["tasks_within_noise"] == ["relevance"] and s["tasks_lost"] == []
    rows, summary = ablation.seed_comparison(runs, skip={"intent/b"})  # a one-class test set
    by = {r["metric"]: r for r in rows}
    assert by["intent/b/accuracy"]["multi_task_shared_bottom vs single"] == ablation.ONE_CLASS
    assert summary["multi_task_shared_bottom"]["tasks_won"] == ["intent", "season"]
    _, single_run = ablation.comparison(runs[0], skip={"intent/b"})
    assert single_run["multi_task_shared_bottom"]["tasks_won"] == ["intent", "relevance", "season"]


def test_training_seed_keeps_the_held_out_data_and_one_class_sets_are_found(tmp_path):
    from shoprank.tasks.examples import build_task_data
    from shoprank.train.config import TrainConfig

    cfg = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    one = cfg.model_dump(mode="json")
    for t in list(one["tasks"]):
        if t != "intent":
            del one["tasks"][t]
    one["model"]["tasks"] = ["intent"]
    wands = tmp_path / "query.csv"  # WANDS format, every query of one class
    wands.write_text("query_id\tquery\tquery_class\n" + "".join(f"{i}\tsofa number {i}\tSofas\n" for i in range(60)))
    one["sources"]["onecls"] = {"format": "wands", "path": str(wands)}
    one["tasks"]["intent"]["sources"] = ["synth", "onecls"]
    cfg = TrainConfig.model_validate(one)
    reseeded = ablation.with_training_seed(cfg, 3)
    assert (reseeded.seed, reseeded.model.seed, reseeded.data_seed) == (3, 3, cfg.seed)
    test = build_task_data(cfg).split("intent", "test")
    assert build_task_data(reseeded).split("intent", "test").equals(test)  # same held-out rows
    other = cfg.model_copy(update={"seed": 3})  # the seed alone moves the splits too
    assert not build_task_data(other).split("intent", "test").equals(test)
    assert ablation.one_class_tests(cfg) == {"intent/onecls"}  # synth's intents have several classes


def test_combine_reads_seeded_ablations(tmp_path, capsys):
    cfg = str(REPO / "configs" / "tiny.yaml")
    dirs = []
    for seed, acc in ((0, 0.8), (1, 0.82), (2, 0.81)):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        results = {"multi_task_shared_bottom": {"season/synth/accuracy": acc + 0.05},
                   "single_task_season": {"season/synth/accuracy": acc}}  # fmt: skip
        (d / "ablation.json").write_text(json.dumps({"budget": "b", "seed": seed, "data_seed": 0, "results": results}))
        dirs.append(str(d))
    out = tmp_path / "combined"
    assert ablation.main(["--config", cfg, "--out", str(out), "--combine", *dirs]) == 0
    got = json.loads((out / "ablation_seeds.json").read_text())
    assert got["seeds"] == [0, 1, 2] and got["summary"]["multi_task_shared_bottom"]["tasks_won"] == ["season"]
    md = (out / "ablation_seeds.md").read_text()
    assert "over 3 training seeds" in md and f"config `{cfg}`" in md
    capsys.readouterr()
    assert ablation.main(["--config", cfg, "--out", str(out), "--combine", dirs[0], dirs[0]]) == 2
    assert "distinct training seeds" in capsys.readouterr().err
