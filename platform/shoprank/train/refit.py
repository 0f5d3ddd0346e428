"""Head refit: after fine-tuning, re-fit the classification heads on frozen embeddings.

With a small CPU budget the shared encoder gets far more useful gradient than each linear
class head gets steps (a head only learns on its own task's steps). Once the encoder is
fixed, the heads are a convex problem on cached embeddings: many full-batch steps cost
seconds. Each head is refit on (a sample of) its training split, and the refit is kept only
if it beats the fine-tuned head on the validation split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from shoprank.eval.tasks import embed_unique
from shoprank.model.multitask import MultiTaskModel

CLASS_TASKS = ("intent", "category", "season")


def _texts(task: str, df: pl.DataFrame) -> list[str]:
    return df["query"].to_list() if task == "intent" else df["item"].to_list()


def refit_heads(
    model: MultiTaskModel,
    train: dict[str, pl.DataFrame],
    val: dict[str, pl.DataFrame],
    *,
    max_examples: int = 6000,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
    log: Any = print,
) -> dict[str, dict[str, float]]:
    """Refit each trained classification head in place; return val accuracy before/after."""
    report: dict[str, dict[str, float]] = {}
    model.eval()
    model.embedding_cache = {}  # same item text across category and season: embed once
    try:
        for task in CLASS_TASKS:
            if not model.is_trained(task) or task not in train or task not in val or val[task].is_empty():
                continue
            tr = train[task]
            if tr.height > max_examples:
                tr = tr.sample(max_examples, seed=seed)
            x = torch.as_tensor(embed_unique(model, _texts(task, tr)))
            y = torch.as_tensor(tr["label"].to_numpy().astype(np.int64))
            xv = torch.as_tensor(embed_unique(model, _texts(task, val[task])))
            yv = val[task]["label"].to_numpy().astype(np.int64)
            head = model.classifiers[task]
            with torch.no_grad():
                before = float((head(xv).argmax(1).numpy() == yv).mean())
            new = torch.nn.Linear(head.in_features, head.out_features)
            with torch.no_grad():
                new.weight.copy_(head.weight)
                new.bias.copy_(head.bias)
            opt = torch.optim.Adam(new.parameters(), lr=lr, weight_decay=weight_decay)
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(new(x), y).backward()
                opt.step()
            with torch.no_grad():
                after = float((new(xv).argmax(1).numpy() == yv).mean())
                kept = after > before
                if kept:
                    head.weight.copy_(new.weight)
                    head.bias.copy_(new.bias)
            scale, proto_acc = fit_prototype_scale(model, task, torch.as_tensor(xv), yv)
            report[task] = {
                "val_accuracy_before": before,
                "val_accuracy_after": after,
                "kept": float(kept),
                "examples": float(tr.height),
                "prototype_scale": scale,
                "val_accuracy_with_prototypes": proto_acc,
            }
            if log:
                log(f"head refit {task}: val accuracy {before:.4f} -> {after:.4f} ({'kept' if kept else 'discarded'})")
                log(f"class prototypes {task}: scale {scale:g}, val accuracy {proto_acc:.4f}")
    finally:
        model.embedding_cache = None
    return report


PROTOTYPE_SCALES = (0.0, 2.5, 5.0, 10.0, 20.0, 40.0)


@torch.inference_mode()
def fit_prototype_scale(model: MultiTaskModel, task: str, xv: torch.Tensor, yv: np.ndarray) -> tuple[float, float]:
    """Embed the task's class names with the (fine-tuned) encoder and pick the scale of their
    cosine term on validation accuracy (0, i.e. off, unless a scale beats the head alone)."""
    names = [n.split(">")[-1].strip() for n in model.label_maps[task]]
    proto = model.prototypes[task]
    proto.vectors.copy_(torch.as_tensor(model.embed(names)))
    best, best_acc = 0.0, -1.0
    for scale in PROTOTYPE_SCALES:
        proto.scale.fill_(scale)
        acc = float((model.class_logits(task, xv).argmax(1).numpy() == yv).mean())
        if acc > best_acc:
            best, best_acc = scale, acc
    proto.scale.fill_(best)
    if best == 0.0:
        proto.vectors.zero_()
    return best, best_acc


REGRESSION_TASKS = ("relevance", "demand")


@torch.inference_mode()
def _pair_hidden(model: MultiTaskModel, task: str, df: pl.DataFrame) -> torch.Tensor:
    from shoprank.eval.tasks import numeric
    from shoprank.model.features import month_features

    i = torch.as_tensor(embed_unique(model, df["item"].to_list()))
    q = torch.zeros_like(i) if task == "demand" else torch.as_tensor(embed_unique(model, df["query"].to_list()))
    num = torch.as_tensor(numeric(df))
    mon = torch.as_tensor(month_features(df["month"].fill_null(0).to_numpy()))
    x = torch.cat([q, i, q * i, (q - i).abs(), num, mon], dim=-1)
    return model.mixer(x)[task].float()


def _with_lexical(hidden: torch.Tensor, df: pl.DataFrame, lexical: bool) -> torch.Tensor:
    """float64 [N, hidden (+ lexical features)] design matrix of a tower refit."""
    h = hidden.double()
    if not lexical:
        return h
    from shoprank.eval.tasks import frame_lexical

    return torch.cat([h, torch.as_tensor(frame_lexical(df), dtype=torch.float64)], dim=1)


def refit_regression_towers(
    model: MultiTaskModel,
    train: dict[str, pl.DataFrame],
    val: dict[str, pl.DataFrame],
    *,
    max_examples: int = 4000,
    ridge: float = 1e-2,
    seed: int = 0,
    log: Any = print,
) -> dict[str, dict[str, float]]:
    """Refit the linear tower of each regression task by ridge regression on the frozen shared
    bottom's features (plus, for relevance, the lexical match features: the tower and the
    lexical term are fitted together); kept only if validation RMSE (of the clamped output)
    improves."""
    report: dict[str, dict[str, float]] = {}
    model.eval()
    model.embedding_cache = {}
    try:
        for task in REGRESSION_TASKS:
            if not model.is_trained(task) or task not in train or task not in val or val[task].is_empty():
                continue
            tr = train[task]
            if tr.height > max_examples:
                tr = tr.sample(max_examples, seed=seed)
            lexical = task in model.lexical
            h = _with_lexical(_pair_hidden(model, task, tr), tr, lexical)
            y = torch.tensor(tr["label"].to_numpy(), dtype=torch.float64)
            hb = torch.cat([h, torch.ones(h.shape[0], 1, dtype=torch.float64)], dim=1)
            eye = torch.eye(hb.shape[1], dtype=torch.float64) * ridge * h.shape[0]
            eye[-1, -1] = 0.0  # no penalty on the bias
            w = torch.linalg.solve(hb.T @ hb + eye, hb.T @ y)
            hv_pair = _pair_hidden(model, task, val[task])
            hv = _with_lexical(hv_pair, val[task], lexical)
            yv = val[task]["label"].to_numpy()
            tower = model.towers[task]
            d = hv_pair.shape[1]
            with torch.no_grad():
                old = tower(hv_pair).squeeze(-1).double()
                if lexical:
                    old = old + hv[:, d:] @ model.lexical[task].weight[0].double()
                old = old.clamp(0, 1).numpy()
                new = (hv @ w[:-1] + w[-1]).clamp(0, 1).numpy()
                before = float(np.sqrt(np.mean((old - yv) ** 2)))
                after = float(np.sqrt(np.mean((new - yv) ** 2)))
                kept = after < before
                if kept:
                    tower.weight.copy_(w[:d].float().unsqueeze(0))
                    tower.bias.copy_(w[-1:].float())
                    if lexical:
                        model.lexical[task].weight.copy_(w[d:-1].float().unsqueeze(0))
            report[task] = {
                "val_rmse_before": before,
                "val_rmse_after": after,
                "kept": float(kept),
                "examples": float(tr.height),
            }
            if log:
                log(f"tower refit {task}: val rmse {before:.4f} -> {after:.4f} ({'kept' if kept else 'discarded'})")
    finally:
        model.embedding_cache = None
    return report
