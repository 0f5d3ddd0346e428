"""Model checkpoints and training state: round trip, and corrupt or foreign files refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from shoprank.errors import CheckpointError
from shoprank.model import ModelConfig, MultiTaskModel, load_checkpoint, save_checkpoint
from shoprank.train.config import parse_config
from shoprank.train.loop import build_optimizer
from shoprank.train.losses import MultiTaskObjective, UncertaintyWeighting, retrieval_loss
from shoprank.train.sampler import batch_indices, step_tasks, task_probabilities, task_schedule
from shoprank.train.state import load_resume, read_train_state, save_train_state

LABELS = {"intent": ["a", "b"], "category": ["x", "y", "z"], "season": ["summer", "winter"]}


def _model() -> MultiTaskModel:
    return MultiTaskModel(ModelConfig(encoder="tiny", hidden=16, max_length=16), LABELS)


def _cfg():
    return parse_config(
        {
            "model": {"encoder": "tiny", "hidden": 16, "max_length": 16},
            "sources": {"s": {"format": "synthetic"}},
            "tasks": {
                t: {"sources": ["s"]}
                for t in ("intent", "retrieval", "relevance", "click", "category", "season", "demand")
            },
            "weighting": "uncertainty",
        }
    )


def _ckpt(tmp_path, name="ck"):
    cfg = _cfg()
    model = MultiTaskModel(cfg.model, LABELS)
    obj = MultiTaskObjective(model, cfg.weights(), cfg.weighting)
    opt = build_optimizer(obj, cfg)
    batch = {k: v for k, v in model.encoder.tokenize(["red shoe", "blue hat"]).items()}
    loss, _ = obj(
        "intent", {"q_ids": batch["input_ids"], "q_mask": batch["attention_mask"], "label": torch.tensor([0.0, 1.0])}
    )
    loss.backward()
    opt.step()
    d = tmp_path / name
    save_checkpoint(model, d, trained_tasks=["intent"])
    save_train_state(d, opt, {"epoch": 1, "global_step": 1, "history": [{"epoch": 1}]})
    return d, cfg, model


def test_round_trip(tmp_path):
    d, cfg, model = _ckpt(tmp_path)
    loaded, manifest = load_checkpoint(d)
    assert manifest["trained_tasks"] == ["intent"] and loaded.label_maps == LABELS
    texts = ["red running shoe", "winter coat"]
    np.testing.assert_allclose(loaded.embed(texts), model.embed(texts), atol=1e-6)
    progress, tensors = read_train_state(d)
    assert progress["epoch"] == 1 and any(k.startswith("opt.") for k in tensors)
    # resume restores weights + optimizer state into a fresh objective
    m2 = MultiTaskModel(cfg.model, LABELS)
    obj2 = MultiTaskObjective(m2, cfg.weights(), cfg.weighting)
    opt2 = build_optimizer(obj2, cfg)
    p = load_resume(d, obj2, opt2, cfg)
    assert p["global_step"] == 1 and len(opt2.state) > 0


def test_corrupt_weights_refused(tmp_path):
    d, _, _ = _ckpt(tmp_path)
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(d)


def test_foreign_or_missing_checkpoint_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_checkpoint(tmp_path)
    d, _, _ = _ckpt(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["format"] = "someone-elses-model"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="not a shoprank checkpoint"):
        load_checkpoint(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)


def test_pickle_file_refused(tmp_path):
    d, _, _ = _ckpt(tmp_path)
    torch.save({"x": torch.zeros(2)}, d / "model.safetensors")  # a pickle where safetensors belongs
    m = json.loads((d / "manifest.json").read_text())
    from shoprank.files import sha256_file

    m["weights_sha256"] = sha256_file(d / "model.safetensors")
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError):
        load_checkpoint(d)


def test_train_state_tamper_and_model_only(tmp_path):
    d, cfg, _ = _ckpt(tmp_path)
    other = tmp_path / "model_only"
    shutil.copytree(d, other)
    (other / "progress.json").unlink()
    with pytest.raises(CheckpointError, match="cannot resume"):
        read_train_state(other)
    (d / "train_state.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="checksum"):
        read_train_state(d)


def test_resume_with_other_model_config_refused(tmp_path):
    d, cfg, _ = _ckpt(tmp_path)
    cfg2 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden": 32})})
    m2 = MultiTaskModel(cfg2.model, LABELS)
    obj2 = MultiTaskObjective(m2, cfg2.weights(), cfg2.weighting)
    with pytest.raises(CheckpointError, match="different model config"):
        load_resume(d, obj2, build_optimizer(obj2, cfg2), cfg2)


def test_uncertainty_weighting_formula():
    uw = UncertaintyWeighting(["relevance", "intent"])
    uw.log_vars["relevance"].data.fill_(np.log(4.0))
    uw.log_vars["intent"].data.fill_(np.log(4.0))
    loss = torch.tensor(2.0)
    assert float(uw("relevance", loss).detach()) == pytest.approx(0.5 * 2.0 / 4.0 + 0.5 * np.log(4.0))
    assert float(uw("intent", loss).detach()) == pytest.approx(2.0 / 4.0 + 0.5 * np.log(4.0))


def test_retrieval_loss_masks_duplicate_items():
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    i = q.clone()
    base = retrieval_loss(q, i, torch.tensor(np.log(20.0)), ["a", "b", "c"])
    dup = retrieval_loss(q, torch.stack([i[0], i[0], i[2]]), torch.tensor(np.log(20.0)), ["a", "a", "c"])
    assert torch.isfinite(base) and torch.isfinite(dup)


def test_sampler_deterministic_and_proportional():
    sizes = {"a": 900, "b": 100}
    s1 = task_schedule(sizes, "proportional", 2000, seed=1, epoch=3)
    assert s1 == task_schedule(sizes, "proportional", 2000, seed=1, epoch=3)
    assert 0.85 < s1.count("a") / 2000 < 0.95
    assert (
        task_schedule(sizes, "round_robin", 4, 0, 1) == ["b", "a", "b", "a"]
        or len(set(task_schedule(sizes, "round_robin", 4, 0, 1))) == 2
    )
    assert step_tasks(sizes, "all", 3, 0, 1) == [("a", "b")] * 3
    assert step_tasks(sizes, "proportional", 50, 1, 3) == [(t,) for t in task_schedule(sizes, "proportional", 50, 1, 3)]
    w = task_probabilities(sizes, "weighted", {"a": 1.0, "b": 3.0})
    assert w == pytest.approx({"a": 0.25, "b": 0.75})
    it = batch_indices(10, 4, seed=0, epoch=1, rank=0, salt=0)
    seen = np.concatenate([next(it), next(it)])
    assert len(set(seen.tolist())) == 8


def test_encoder_grad_scales_what_a_task_sends_into_the_encoder():
    """encoder_grad 0: the task trains its head only; 0.5: half its encoder gradient; 1: all."""
    cfg = parse_config(
        {
            "model": {"encoder": "tiny", "hidden": 16, "max_length": 16},
            "sources": {"s": {"format": "synthetic"}},
            "tasks": {"season": {"sources": ["s"], "encoder_grad": 0.5}, "intent": {"sources": ["s"]}},
        }
    )
    assert cfg.encoder_grads() == {"season": 0.5}
    with pytest.raises(Exception, match="encoder_grad"):
        parse_config({**cfg.model_dump(mode="json"), "tasks": {"season": {"sources": ["s"], "encoder_grad": 2}}})
    tok = _model().encoder.tokenize(["red shoe", "wool coat"])
    batch = {"i_ids": tok["input_ids"], "i_mask": tok["attention_mask"], "label": torch.tensor([0.0, 1.0])}
    grads = {}
    for g in (1.0, 0.5, 0.0):
        torch.manual_seed(0)
        model = _model()
        MultiTaskObjective(model, {"season": 1.0}, encoder_grads={"season": g})("season", batch)[0].backward()
        enc = [p.grad for p in model.encoder.parameters() if p.requires_grad]
        head = [p.grad for n, p in model.named_parameters() if "season" in n and p.grad is not None]
        assert head and all(h.abs().sum() > 0 for h in head)
        grads[g] = torch.cat([e.flatten() for e in enc]) if all(e is not None for e in enc) else None
    assert grads[1.0].abs().sum() > 0
    assert torch.allclose(grads[0.5], 0.5 * grads[1.0], atol=1e-6)
    assert grads[0.0] is None  # the encoder ran without autograd for this task
