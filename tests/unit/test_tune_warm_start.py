"""Warm start and frozen encoder for sweep trials (no Ray): ``TrainConfig.init_from`` loads a
checkpoint's weights into a fresh run, refuses one of another shape, and the sweep's options
reach every trial's training config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from shoprank.errors import CheckpointError
from shoprank.model import ModelConfig, MultiTaskModel, save_checkpoint
from shoprank.tasks.examples import build_task_data
from shoprank.train.config import load_config, parse_config
from shoprank.train.loop import frame_to_arrays, run_training
from shoprank.train.warm_start import load_init_weights
from shoprank.tune.config import parse_tune_config
from shoprank.tune.trainable import (
    FREEZE_ALL,
    TUNED_WEIGHTS_KEY,
    baseline_names,
    trial_train_config,
    tuned_seed_names,
    val_frames,
)

from tests.tune_helpers import REPO
from tests.tune_helpers import tune_cfg as _cfg

LABELS = {"intent": ["a", "b"], "season": ["summer", "winter"]}


def _model(seed: int = 0, **over: object) -> MultiTaskModel:
    cfg = ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["intent", "relevance", "season"], seed=seed)
    return MultiTaskModel(cfg.model_copy(update=over), LABELS)


def _same(a: MultiTaskModel, b: MultiTaskModel) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_init_weights_load_and_mismatches_are_refused(tmp_path: Path) -> None:
    src = _model(seed=7)
    save_checkpoint(src, tmp_path / "ck")
    fresh = _model(seed=0, freeze_layers=2, dropout=0.2)  # shape-free fields may differ
    assert not _same(fresh, src)
    load_init_weights(fresh, tmp_path / "ck")
    assert _same(fresh, src)
    with pytest.raises(CheckpointError, match=r"model\.hidden is 16 there but 32 here"):
        load_init_weights(_model(hidden=32), tmp_path / "ck")
    other = MultiTaskModel(src.config, {**LABELS, "season": ["spring", "fall"]})
    with pytest.raises(CheckpointError, match="season classes differ"):
        load_init_weights(other, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="not a shoprank checkpoint"):
        load_init_weights(_model(), tmp_path)


def test_run_training_starts_from_init_from(tmp_path: Path) -> None:
    base = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    cfg = base.with_tasks({t: base.tasks[t] for t in ("relevance", "season")}).model_copy(
        update={"epochs": 1, "steps_per_epoch": 1, "lr": 1e-9, "head_lr": 1e-9, "num_workers": 1}
    )
    data = build_task_data(cfg)
    init = MultiTaskModel(cfg.model.model_copy(update={"seed": 7}), data.label_maps)
    save_checkpoint(init, tmp_path / "init", trained_tasks=["relevance", "season"])
    saved: dict[str, torch.Tensor] = {}
    trained: list[str] = []

    def report(_metrics: dict, ckpt: str | None) -> None:
        from safetensors.torch import load_file

        saved.update(load_file(str(Path(ckpt) / "model.safetensors")))
        trained.extend(json.loads((Path(ckpt) / "manifest.json").read_text())["trained_tasks"])

    train = {t: frame_to_arrays(data.split(t, "train").drop("split")) for t in cfg.tasks}
    warm = cfg.model_copy(update={"init_from": str(tmp_path / "init")})
    run_training(warm, train, val_frames(data, warm), data.label_maps, report=report, log=None)
    fresh = MultiTaskModel(cfg.model, data.label_maps).state_dict()  # the start without init_from
    ref = init.state_dict()
    keys = [k for k in saved if k.startswith("encoder.") and ref[k].ndim == 2]
    assert keys and all(torch.allclose(saved[k], ref[k], atol=1e-6) for k in keys)  # lr ~0: still the init weights
    assert not all(torch.allclose(fresh[k], ref[k]) for k in keys)
    # one step trains one task; the warm start's other trained head stays trained in the manifest
    assert trained == ["relevance", "season"]


def test_init_from_resolves_against_the_config_base(tmp_path: Path) -> None:
    data = {"sources": {"s": {"format": "synthetic"}}, "tasks": {"relevance": {"sources": ["s"]}}}
    cfg = parse_config({**data, "init_from": "runs/x/model"}).resolve_paths(tmp_path)
    assert cfg.init_from == str((tmp_path / "runs/x/model").resolve())
    assert parse_config(data).resolve_paths(tmp_path).init_from is None


def test_sweep_options_reach_every_trial_config() -> None:
    base = load_config(REPO / "configs" / "tiny.yaml", base=REPO)
    tune = parse_tune_config(_cfg(init_from="/models/ref", freeze_encoder=True, baseline_seeds=3))
    assert baseline_names(tune) == ["equal", "uncertainty", "equal~1", "uncertainty~1", "equal~2", "uncertainty~2"]
    assert tuned_seed_names(tune) == ["tuned~1", "tuned~2"]
    again = trial_train_config(base, tune, {"baseline": "tuned~1", TUNED_WEIGHTS_KEY: {"click": 3.0, "season": 0.5}})
    assert again.tasks["click"].weight == 3.0 and again.tasks["season"].weight == 0.5 and again.weighting == "fixed"
    assert again.seed == base.seed + 1 and again.model.freeze_layers == FREEZE_ALL
    tuned = trial_train_config(base, tune, {"w_click": 3.0})
    assert tuned.init_from == "/models/ref" and tuned.model.freeze_layers == FREEZE_ALL
    assert tuned.tasks["click"].weight == 3.0 and tuned.tasks["season"].weight == 1.0
    seed2 = trial_train_config(base, tune, {"baseline": "equal~2"})
    assert seed2.seed == base.seed + 2 and seed2.model.seed == base.model.seed + 2
    assert seed2.split.seed == base.data_seed  # same split and validation sample as the other seeds
    assert seed2.model.freeze_layers == FREEZE_ALL and seed2.weighting == "fixed"
    assert trial_train_config(base, tune, {"baseline": "uncertainty"}).weighting == "uncertainty"
    plain = trial_train_config(base, parse_tune_config(_cfg()), {"w_click": 3.0})
    assert plain.init_from is None and plain.model.freeze_layers == base.model.freeze_layers
