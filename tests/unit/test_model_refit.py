"""Head refit on frozen embeddings: kept only when it beats the fine-tuned head on validation."""

from __future__ import annotations

import polars as pl
from shoprank.model import ModelConfig, MultiTaskModel
from shoprank.train.refit import refit_heads


def _frame(n: int) -> pl.DataFrame:
    words = ["boots", "sandals", "parka", "shorts"]
    seasons = [3, 1, 3, 1]  # winter / summer
    rows = [
        {"item": f"brand{i % 7} {words[i % 4]}", "query": "", "label": float(seasons[i % 4] == 3)} for i in range(n)
    ]
    return pl.DataFrame(rows)


def test_refit_learns_separable_heads():
    model = MultiTaskModel(
        ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["season"]), {"season": ["s", "w"]}
    )
    model.trained_tasks = {"season"}
    rep = refit_heads(model, {"season": _frame(80)}, {"season": _frame(40)}, steps=200, lr=0.1, log=None)
    r = rep["season"]
    assert r["val_accuracy_after"] >= r["val_accuracy_before"]
    assert r["kept"] == float(r["val_accuracy_after"] > r["val_accuracy_before"])
    assert getattr(model, "embedding_cache", None) is None


def test_class_prototypes_carry_classes_with_few_examples(tmp_path):
    """Intent classes seen once or never in training: the head cannot learn them, the class
    names' embeddings can; the refit turns the term on only because validation improves."""
    import json

    import torch
    from safetensors.torch import load_file, save_file
    from shoprank.files import sha256_file
    from shoprank.model import load_checkpoint, save_checkpoint

    names = ["kitchen sinks", "area rugs", "bar stools", "wall art", "desk lamps", "bath towels"]
    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["intent"]), {"intent": names})
    model.trained_tasks = {"intent"}
    train = pl.DataFrame({"query": ["kitchen sinks"] * 20, "item": [""] * 20, "label": [0.0] * 20})
    val = pl.DataFrame({"query": names, "item": [""] * 6, "label": [float(i) for i in range(6)]})
    rep = refit_heads(model, {"intent": train}, {"intent": val}, steps=50, log=None)["intent"]
    assert rep["prototype_scale"] > 0 and model.prototypes["intent"].active
    assert rep["val_accuracy_with_prototypes"] > rep["val_accuracy_after"]
    pred = model.class_logits("intent", torch.as_tensor(model.embed(names))).argmax(1).tolist()
    assert pred == list(range(6))
    # saved and loaded with the checkpoint; a checkpoint from before the term loads with it off
    ck = save_checkpoint(model, tmp_path / "ck", trained_tasks=["intent"])
    loaded, _ = load_checkpoint(ck)
    assert float(loaded.prototypes["intent"].scale) == rep["prototype_scale"]
    state = {k: v for k, v in load_file(str(ck / "model.safetensors")).items() if not k.startswith("prototypes.")}
    save_file(state, str(ck / "model.safetensors"))
    manifest = json.loads((ck / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(ck / "model.safetensors")
    (ck / "manifest.json").write_text(json.dumps(manifest))
    assert not load_checkpoint(ck)[0].prototypes["intent"].active


def test_ridge_penalty_is_chosen_by_cross_validation():
    """Clean linear signal: the smallest penalty wins and the weights recover the function;
    a few rows with many pure-noise columns: a larger penalty wins (and beats the smallest)."""
    import torch
    from shoprank.train.refit import RIDGES, fit_ridge

    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 3, generator=g, dtype=torch.float64)
    y = 0.2 + 0.3 * x[:, 0] + 0.1 * x[:, 2]
    w, ridge = fit_ridge(x, y, torch.arange(500) % 5)
    assert ridge == RIDGES[0]
    torch.testing.assert_close(w, torch.tensor([0.3, 0.0, 0.1, 0.2], dtype=torch.float64), atol=2e-3, rtol=0)
    noise = torch.rand(60, 40, generator=g, dtype=torch.float64)
    target = torch.rand(60, generator=g, dtype=torch.float64) * 0.2 + 0.4
    _, noisy = fit_ridge(noise, target, torch.arange(60) % 5)
    assert noisy > RIDGES[0]
