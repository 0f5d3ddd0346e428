"""Training's seams for tests: epoch-end callbacks and the LambdaLR schedule (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shoprank.tasks.examples import build_task_data, val_frame
from shoprank.train.config import load_config
from shoprank.train.loop import EpochEnd, build_scheduler, frame_to_arrays, lr_factor, run_training

REPO = Path(__file__).resolve().parents[2]


def _cfg(**update):
    cfg = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    return cfg.model_copy(update={"epochs": 2, "steps_per_epoch": 2, "warmup_steps": 1, **update})


def test_lambda_lr_follows_lr_factor_and_resumes_mid_run():
    cfg = _cfg()
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.5, "initial_lr": 0.5}])
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(cfg.epochs * cfg.steps_per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [0.5 * lr_factor(s, cfg) for s in range(len(seen))]
    # a resumed run (an older checkpoint names the rate base_lr) continues where it stopped
    resumed = torch.optim.SGD([{"params": [p], "lr": 123.0, "base_lr": 0.5}])
    build_scheduler(resumed, cfg, global_step=3)
    assert resumed.param_groups[0]["lr"] == 0.5 * lr_factor(3, cfg)
    assert "base_lr" not in resumed.param_groups[0]


def test_epoch_callbacks_see_every_epoch_and_can_stop_the_run():
    cfg = _cfg()
    data = build_task_data(cfg)
    train = {t: frame_to_arrays(data.split(t, "train")) for t in cfg.tasks}
    val = {t: val_frame(data, t, cfg) for t in cfg.tasks}
    seen: list[EpochEnd] = []
    run_training(cfg, train, val, data.label_maps, callbacks=[seen.append], log=None)
    assert [(e.epoch, e.rank) for e in seen] == [(1, 0), (2, 0)]
    assert all("val_loss" in e.metrics for e in seen)

    reports = []

    def fail(end: EpochEnd) -> None:
        raise RuntimeError(f"injected fault after epoch {end.epoch}")

    with pytest.raises(RuntimeError, match="injected fault after epoch 1"):
        run_training(cfg, train, val, data.label_maps, report=lambda m, d: reports.append(m["epoch"]),
                     callbacks=[fail], log=None)  # fmt: skip
    assert reports == [1]  # the fault comes after the epoch's report, as a crash would
