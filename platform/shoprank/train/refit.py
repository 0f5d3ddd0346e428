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

from shoprank.eval.tasks import frame_lexical, numeric
from shoprank.model.embeddings import EmbeddingCache, embed_unique
from shoprank.model.features import month_features
from shoprank.model.lexical import lexical_basis
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.prototypes import class_name_text
from shoprank.model.registry import CLASS_TASKS, REGRESSION_TASKS, spec


def _texts(task: str, df: pl.DataFrame) -> list[str]:
    return df[spec(task).text_column].to_list()


def _refit_sample(
    model: MultiTaskModel,
    task: str,
    train: dict[str, pl.DataFrame],
    val: dict[str, pl.DataFrame],
    max_examples: int,
    seed: int,
) -> pl.DataFrame | None:
    """The training sample a trained head is refitted on (at most ``max_examples``, seeded), or None
    when the task is untrained or has no training or validation rows."""
    if not model.is_trained(task) or task not in train or task not in val or val[task].is_empty():
        return None
    tr = train[task]
    return tr.sample(max_examples, seed=seed) if tr.height > max_examples else tr


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
    cache = EmbeddingCache(model)  # same item text across category and season: embed once
    for task in CLASS_TASKS:
        tr = _refit_sample(model, task, train, val, max_examples, seed)
        if tr is None:
            continue
        x = torch.as_tensor(embed_unique(model, _texts(task, tr), cache))
        y = torch.as_tensor(tr["label"].to_numpy().astype(np.int64))
        xv = torch.as_tensor(embed_unique(model, _texts(task, val[task]), cache))
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
    return report


PROTOTYPE_SCALES = (0.0, 2.5, 5.0, 10.0, 20.0, 40.0)


@torch.inference_mode()
def fit_prototype_scale(model: MultiTaskModel, task: str, xv: torch.Tensor, yv: np.ndarray) -> tuple[float, float]:
    """Embed the task's class names with the (fine-tuned) encoder and pick the scale of their
    cosine term on validation accuracy (0, i.e. off, unless a scale beats the head alone)."""
    names = [class_name_text(n) for n in model.label_maps[task]]
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


@torch.inference_mode()
def _pair_hidden(model: MultiTaskModel, task: str, df: pl.DataFrame, cache: EmbeddingCache) -> torch.Tensor:
    i = torch.as_tensor(embed_unique(model, df["item"].to_list(), cache))
    if spec(task).uses_query:
        q = torch.as_tensor(embed_unique(model, df["query"].to_list(), cache))
    else:
        q = torch.zeros_like(i)
    num = torch.as_tensor(numeric(df))
    mon = torch.as_tensor(month_features(df["month"].fill_null(0).to_numpy()))
    x = torch.cat([q, i, q * i, (q - i).abs(), num, mon], dim=-1)
    return model.mixer(x)[task].float()


def _with_lexical(hidden: torch.Tensor, df: pl.DataFrame, lexical: bool) -> torch.Tensor:
    """float64 [N, hidden (+ lexical basis)] design matrix of a tower refit."""
    h = hidden.double()
    if not lexical:
        return h
    return torch.cat([h, lexical_basis(torch.as_tensor(frame_lexical(df), dtype=torch.float64))], dim=1)


def _folds(df: pl.DataFrame, folds: int = 5) -> torch.Tensor:
    """Cross-validation folds by query (rows of one query stay together), by row without queries."""
    if "query" in df.columns and df["query"].n_unique() >= 10 * folds:
        return torch.from_numpy((df["query"].hash(seed=0) % folds).cast(pl.Int64).to_numpy().copy())
    return torch.arange(df.height) % folds


RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # penalty per example, chosen by k-fold CV on the training sample


def _solve(gram: torch.Tensor, rhs: torch.Tensor, ridge: float, n: int) -> torch.Tensor:
    """Ridge weights from the Gram matrix of ``[x, 1]``; the bias (last) is not penalised."""
    penalty = torch.full((gram.shape[0],), ridge * n, dtype=gram.dtype)
    penalty[-1] = 0.0
    return torch.linalg.solve(gram + torch.diag(penalty), rhs)


def fit_ridge(
    x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor, ridges: tuple[float, ...] = RIDGES
) -> tuple[torch.Tensor, float]:
    """Ridge regression of ``y`` on ``x``: weights [D + 1] (bias last) with the penalty of the
    lowest cross-validated RMSE (of the output clamped to [0, 1]); ``fold`` [N] names each row's
    fold. Each fold's Gram matrix is computed once: a training Gram is the total minus one fold's."""
    xb = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    parts = [(fold == k).nonzero().squeeze(1) for k in fold.unique()]
    grams = [xb[i].T @ xb[i] for i in parts]
    rhss = [xb[i].T @ y[i] for i in parts]
    gram, rhs = sum(grams), sum(rhss)
    best, best_rmse = ridges[0], float("inf")
    for ridge in ridges if len(parts) > 1 else ridges[:1]:
        sq = 0.0
        for i, g, r in zip(parts, grams, rhss, strict=True):
            w = _solve(gram - g, rhs - r, ridge, x.shape[0] - len(i))
            sq += float((((xb[i] @ w).clamp(0, 1) - y[i]) ** 2).sum())
        if (rmse := (sq / x.shape[0]) ** 0.5) < best_rmse:
            best, best_rmse = ridge, rmse
    return _solve(gram, rhs, best, x.shape[0]), best


def refit_regression_towers(
    model: MultiTaskModel,
    train: dict[str, pl.DataFrame],
    val: dict[str, pl.DataFrame],
    *,
    max_examples: int = 20_000,
    seed: int = 0,
    log: Any = print,
) -> dict[str, dict[str, float]]:
    """Refit the linear tower of each regression task by ridge regression on the frozen shared
    bottom's features (plus, for relevance, the lexical basis: the tower and the lexical term
    are fitted together), the penalty chosen by cross-validation on the training sample; kept
    only if validation RMSE (of the clamped output) improves."""
    report: dict[str, dict[str, float]] = {}
    model.eval()
    cache = EmbeddingCache(model)
    for task in REGRESSION_TASKS:
        tr = _refit_sample(model, task, train, val, max_examples, seed)
        if tr is None:
            continue
        lexical = task in model.lexical
        h = _with_lexical(_pair_hidden(model, task, tr, cache), tr, lexical)
        y = torch.tensor(tr["label"].to_numpy(), dtype=torch.float64)
        w, ridge = fit_ridge(h, y, _folds(tr))
        hv_pair = _pair_hidden(model, task, val[task], cache)
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
            "ridge": ridge,
        }
        if log:
            log(
                f"tower refit {task}: val rmse {before:.4f} -> {after:.4f} (ridge {ridge:g}, "
                f"{tr.height} examples; {'kept' if kept else 'discarded'})"
            )
    return report
