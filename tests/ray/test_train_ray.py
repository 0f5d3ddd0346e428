"""A tiny multi-task run on a real local Ray with 2 workers: fault after epoch 2, resume, load, evaluate."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from shoprank.model import load_checkpoint
from shoprank.tasks.examples import build_task_data
from shoprank.train.config import load_config
from shoprank.train.driver import epoch_checkpoints, train
from shoprank.train.loop import EpochEnd
from shoprank.train.state import read_train_state

REPO = Path(__file__).resolve().parents[2]


def fault_after(epoch: int):  # noqa: ANN201 - an epoch-end callback
    """An epoch-end callback that fails the run after ``epoch`` (a local function: Ray pickles it by value)."""

    def fail(end: EpochEnd) -> None:
        if end.epoch == epoch:
            raise RuntimeError(f"injected fault after epoch {end.epoch}")

    return fail


@pytest.fixture(scope="module")
def tiny_run(ray_local, tmp_path_factory):
    cfg = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    assert cfg.epochs == 3 and cfg.num_workers == 2
    data = build_task_data(cfg)
    out = tmp_path_factory.mktemp("tiny-train")
    with pytest.raises(Exception, match="injected fault after epoch 2"):
        train(cfg, out, workers=2, callbacks=[fault_after(2)], data=data)
    before = [read_train_state(d)[0]["epoch"] for d in epoch_checkpoints(out)]
    first_history = read_train_state(epoch_checkpoints(out)[-1])[0]["history"]
    res = train(cfg, out, workers=2, data=data)  # same command again: resumes
    return cfg, out, res, before, first_history


def test_killed_run_resumes_without_lost_or_repeated_epochs(tiny_run):
    cfg, out, res, before, first_history = tiny_run
    assert before == [1, 2]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    # epochs 1-2 are the ones recorded before the fault, not re-run
    assert res.history[:2] == first_history
    assert [read_train_state(d)[0]["epoch"] for d in epoch_checkpoints(out)] == [1, 2, 3]
    assert res.history[-1]["global_step"] == 3 * cfg.steps_per_epoch
    hist = json.loads((out / "history.json").read_text())
    assert hist["epochs_run"] == [1, 2, 3]
    assert (out / "loss_per_task.png").stat().st_size > 0 and (out / "val_metrics.png").is_file()


def test_resume_takes_the_newest_epoch_whichever_source_has_it(tiny_run):
    """Ray's registered checkpoint can lag the disk by one epoch when a fault follows a report."""
    from shoprank.train.state import newest_checkpoint

    _, out, *_ = tiny_run
    ep1, ep2, _ = epoch_checkpoints(out)
    assert newest_checkpoint([ep1, ep2]) == ep2 and newest_checkpoint([ep2, ep1]) == ep2
    assert newest_checkpoint([ep1, None]) == ep1 and newest_checkpoint([None]) is None
    assert newest_checkpoint([out / "missing", ep1]) == ep1


def test_checkpoint_loads_with_label_maps_and_trained_tasks(tiny_run):
    cfg, out, res, *_ = tiny_run
    model, manifest = load_checkpoint(res.checkpoint)
    assert set(manifest["trained_tasks"]) == set(cfg.tasks)  # round robin: every task got steps
    assert set(manifest["label_maps"]) == {"intent", "category", "season"}
    assert manifest["data_fingerprints"]["synth"]["rows"]["catalogue"] == 300
    assert manifest["train_config"]["epochs"] == 3
    assert model.embed(["red shoe"]).shape == (1, model.encoder.dim)


def test_eval_reports_every_task(tiny_run):
    from shoprank.eval.runner import evaluate_checkpoint

    _, _, res, *_ = tiny_run
    report = evaluate_checkpoint(res.checkpoint, baselines=False, max_rows=100)
    keys = set(report["metrics"])
    for k in (
        "relevance/synth/ndcg@10",
        "relevance/synth/rmse",
        "intent/synth/accuracy",
        "season/synth/accuracy",
        "category/synth/macro_f1",
        "demand/synth/rmse",
        "click/synth/auc",
        "retrieval/synth/recall@10",
    ):
        assert k in keys, k


def test_eval_cli_judgements_json(tiny_run, tmp_path, capsys):
    from shoprank.cli import main

    _, _, res, *_ = tiny_run
    path = tmp_path / "j.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "product_title", "product_description", "label"])
        for q in ("red shoe", "winter coat"):
            for n, t in enumerate(("red running shoe", "wool winter coat", "garden hose")):
                w.writerow([q, t, "", float(n)])
    assert main(["eval", str(res.checkpoint), "--judgements", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ndcg@10", "spearman", "pairs", "queries"} <= set(out) and out["pairs"] == 6
    assert main(["eval", str(tmp_path / "nope"), "--judgements", str(path)]) == 2  # not a checkpoint: one-line error


def _bestbuy_files(tmp_path: Path) -> tuple[Path, Path]:
    """A click log in the Best Buy format (30 days, six games) and its product XML."""
    from datetime import datetime, timedelta

    games = {"101": "Halo 3", "102": "Gears of War", "103": "Skyrim", "104": "FIFA 12", "105": "Forza 4", "106": "Rage"}
    xml = "".join(f"<product><sku>{k}</sku><name>{v}</name><regularPrice>20</regularPrice></product>"
                  for k, v in games.items())  # fmt: skip
    products = tmp_path / "products.xml"
    products.write_text(f"<products>{xml}</products>")
    clicks = tmp_path / "clicks.csv"
    t0 = datetime(2011, 9, 1)
    with open(clicks, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "sku", "category", "query", "click_time", "query_time"])
        for n in range(240):
            q, sku = [("halo", "101"), ("gears", "102"), ("skyrim", "103"), ("fifa", "104")][n % 4]
            if n % 5 == 0:
                sku = "105"  # some clicks go elsewhere, so the ranking is not a lookup table
            t = (t0 + timedelta(hours=3 * n)).strftime("%Y-%m-%d %H:%M:%S.000")
            w.writerow([f"u{n % 37}", sku, "abcat0700000", q, t, t])
        w.writerow(["u1", "999", "abcat0700000", "halo", t, t])  # not in the catalogue: counted, not ranked
    return clicks, products


def test_eval_cli_clicks_json(tiny_run, tmp_path, capsys):
    """--clicks: a time split of the log; the learned blend on the newest clicks, every system beside it."""
    from shoprank.cli import main

    _, _, res, *_ = tiny_run
    clicks, products = _bestbuy_files(tmp_path)
    assert main(["eval", str(res.checkpoint), "--clicks", str(clicks), "--catalogue", str(products), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["clicks"] == 240 and out["clicks_unknown_item"] == 1
    assert out["test_clicks"] + out["history_clicks"] == 240 and 0 < out["test_clicks"] < 60
    assert out["system"] == "learned_blend"
    assert out["map@5"] == out["learned_blend/map@5"]
    for system in ("model", "lookup", "lookup+model", "popularity", "bm25", "ceiling", "model_all_clicks"):
        assert 0.0 <= out[f"{system}/map@5"] <= 1.0, system
    # the history knows each query's game, which the tiny model alone cannot
    assert out["lookup/map@5"] > out["model/map@5"]
    assert main(["eval", str(res.checkpoint), "--clicks", str(clicks)]) == 2  # --catalogue missing
    assert (
        main(["eval", str(res.checkpoint), "--clicks", str(tmp_path / "nope.csv"), "--catalogue", str(products)]) == 2
    )


@pytest.mark.parametrize("surgery", ["none", "pcgrad"])
def test_all_schedule_steps_on_every_task_at_once(ray_local, tmp_path, surgery):
    """schedule: all — each optimizer step combines one batch of every task: their sum, or PCGrad
    (DDP, 2 workers: every rank must project the same gradients in the same order)."""
    cfg = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    cfg = cfg.model_copy(update={"schedule": "all", "grad_surgery": surgery, "epochs": 1, "steps_per_epoch": 3})
    res = train(cfg, tmp_path / "all", workers=2, data=build_task_data(cfg))
    state = read_train_state(epoch_checkpoints(tmp_path / "all")[-1])[0]
    assert state["global_step"] == 3
    assert state["task_steps"] == {t: 3 for t in cfg.tasks}
    assert all(math.isfinite(res.history[-1][f"train/{t}/loss"]) for t in cfg.tasks)
    if surgery == "pcgrad":
        assert 0.0 <= res.history[-1]["train/pcgrad_conflict_fraction"] <= 1.0
    else:
        assert "train/pcgrad_conflict_fraction" not in res.history[-1]
