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
