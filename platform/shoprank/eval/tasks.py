"""One evaluator per task: predictions and metrics on example frames (``shoprank.tasks.examples``).

Used twice: by the training loop for validation (early stopping) and by ``shoprank eval`` on
the held-out test split. ``EVALUATORS`` maps every registered task to its evaluator, chosen
by the task's kind (``shoprank.model.registry``); each returns the spec's metrics plus
``loss`` (the training loss on those rows). Pass an :class:`EmbeddingCache` to embed each
distinct text once across calls while the weights are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from shoprank.eval import metrics as M
from shoprank.model.embeddings import EmbeddingCache, embed_unique
from shoprank.model.features import item_numeric_features, month_features
from shoprank.model.lexical import lexical_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.registry import SPECS, spec
from shoprank.model.text import title_of

Evaluator = Callable[[MultiTaskModel, pl.DataFrame, "EmbeddingCache | None"], dict[str, float]]


def numeric(df: pl.DataFrame) -> np.ndarray:
    return item_numeric_features(
        df["price"].fill_null(float("nan")).to_numpy(),
        df["rating"].fill_null(float("nan")).to_numpy(),
        df["popularity"].fill_null(0.0).to_numpy(),
    )


def frame_lexical(df: pl.DataFrame) -> np.ndarray:
    """Lexical match features [N, F] of each row's query and item title."""
    return lexical_features(df["query"].to_list(), [title_of(t) for t in df["item"].to_list()])


@torch.inference_mode()
def pair_raw(
    model: MultiTaskModel, task: str, df: pl.DataFrame, cache: EmbeddingCache | None = None, batch_size: int = 512
) -> np.ndarray:
    """Raw head output per row (relevance / demand value, click logit), lexical term included."""
    model.eval()
    i = embed_unique(model, df["item"].to_list(), cache)
    q = embed_unique(model, df["query"].to_list(), cache) if spec(task).uses_query else np.zeros_like(i)
    num = numeric(df)
    mon = month_features(df["month"].to_numpy())
    out = []
    dev = model.device
    for s in range(0, df.height, batch_size):

        def t(a: np.ndarray, s: int = s) -> torch.Tensor:
            return torch.as_tensor(a[s : s + batch_size], dtype=torch.float32, device=dev)

        out.append(model.pair_outputs(t(q), t(i), t(num), t(mon))[task].float().cpu().numpy())
    raw = np.concatenate(out) if out else np.zeros(0, np.float32)
    if task in model.lexical and model.uses_lexical:
        raw = model.add_lexical({task: raw}, frame_lexical(df))[task]
    return raw


@torch.inference_mode()
def class_logits(model: MultiTaskModel, task: str, df: pl.DataFrame, cache: EmbeddingCache | None = None) -> np.ndarray:
    model.eval()
    texts = df[spec(task).text_column].to_list()
    emb = torch.as_tensor(embed_unique(model, texts, cache), device=model.device)
    return model.class_logits(task, emb).float().cpu().numpy()


def retrieval_metrics(
    model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None = None, chunk: int = 32
) -> dict[str, float]:
    """recall@10 / MRR of each query's relevant items among all items of the frame, and the
    in-chunk InfoNCE loss (the training loss, for val_loss)."""
    items = list(dict.fromkeys(df["item_id"].to_list()))
    ipos = {k: n for n, k in enumerate(items)}
    first_text = dict(zip(df["item_id"].to_list(), df["item"].to_list(), strict=True))
    iemb = embed_unique(model, [first_text[k] for k in items], cache)
    queries = list(dict.fromkeys(df["query"].to_list()))
    qemb = embed_unique(model, queries, cache)
    rel: dict[str, set[int]] = {}
    for q, k in zip(df["query"].to_list(), df["item_id"].to_list(), strict=True):
        rel.setdefault(q, set()).add(ipos[k])
    sims = qemb @ iemb.T
    recalls, rr = [], []
    for n, q in enumerate(queries):
        ranked = np.argsort(-sims[n], kind="stable")
        recalls.append(M.recall_at_k(rel[q], ranked.tolist(), 10))
        first = next(r for r, x in enumerate(ranked) if x in rel[q])
        rr.append(1.0 / (first + 1))
    # in-chunk loss, as in training
    qrow = embed_unique(model, df["query"].to_list(), cache)
    irow = iemb[[ipos[k] for k in df["item_id"].to_list()]]
    scale = float(math.exp(min(float(model.logit_scale.detach()), 4.6052))) if hasattr(model, "logit_scale") else 20.0
    losses = []
    for s in range(0, df.height - 1, chunk):
        qs, its = torch.as_tensor(qrow[s : s + chunk]), torch.as_tensor(irow[s : s + chunk])
        if qs.shape[0] < 2:
            continue
        logits = scale * qs @ its.T
        tgt = torch.arange(qs.shape[0])
        losses.append(float(0.5 * (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.T, tgt))))
    return {"recall@10": float(np.mean(recalls)), "mrr": float(np.mean(rr)), "loss": float(np.mean(losses or [0.0]))}


# -- the evaluator of each kind -------------------------------------------------------------
def _classification(task: str, model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None) -> dict:
    y = df["label"].to_numpy()
    logits = class_logits(model, task, df, cache)
    pred = logits.argmax(1)
    loss = float(F.cross_entropy(torch.as_tensor(logits), torch.tensor(y.astype(np.int64))))
    return {"accuracy": M.accuracy(y.astype(int), pred), "macro_f1": M.macro_f1(y.astype(int), pred), "loss": loss}


def _contrastive(task: str, model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None) -> dict:
    return retrieval_metrics(model, df, cache)


def _binary(task: str, model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None) -> dict:
    y = df["label"].to_numpy()
    raw = pair_raw(model, task, df, cache)
    p = 1.0 / (1.0 + np.exp(-raw))
    loss = float(F.binary_cross_entropy_with_logits(torch.as_tensor(raw), torch.tensor(y, dtype=torch.float32)))
    return {"auc": M.roc_auc(y, p), "accuracy": M.accuracy(y > 0.5, p > 0.5), "loss": loss}


def _regression(task: str, model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None) -> dict:
    y = df["label"].to_numpy()
    raw = pair_raw(model, task, df, cache)
    return {"rmse": M.rmse(y, np.clip(raw, 0.0, 1.0)), "loss": float(np.mean((raw - y) ** 2))}


def _pair_regression(task: str, model: MultiTaskModel, df: pl.DataFrame, cache: EmbeddingCache | None) -> dict:
    """Graded relevance: the regression metrics plus nDCG@10 over each query's rows."""
    y = df["label"].to_numpy()
    raw = pair_raw(model, task, df, cache)
    pred = np.clip(raw, 0.0, 1.0)
    out = {"rmse": M.rmse(y, pred), "loss": float(np.mean((raw - y) ** 2))}
    out["ndcg@10"] = M.mean_ndcg_at_k(df["group"].to_numpy(), y, pred, 10)
    return out


_BY_KIND = {
    "classification": _classification,
    "contrastive": _contrastive,
    "binary": _binary,
    "regression": _regression,
    "pair_regression": _pair_regression,
}
EVALUATORS: dict[str, Evaluator] = {s.name: partial(_BY_KIND[s.kind], s.name) for s in SPECS}


def task_metrics(
    model: MultiTaskModel, task: str, df: pl.DataFrame, cache: EmbeddingCache | None = None
) -> dict[str, float]:
    """Metrics of one task on one split, plus ``loss`` (the training loss on those rows)."""
    if df.is_empty():
        return {}
    return EVALUATORS[task](model, df, cache)


def validation_summary(per_task: dict[str, dict[str, float]], weights: dict[str, float]) -> dict[str, float]:
    """Flatten to ``val/<task>/<metric>`` plus ``val_loss`` (Σ w·loss) and ``val_score``
    (mean over tasks of the primary metric, rmse mapped to 1 − rmse)."""
    flat: dict[str, float] = {}
    loss, scores = 0.0, []
    for task, ms in per_task.items():
        for k, v in ms.items():
            flat[f"val/{task}/{k}"] = float(v)
        if "loss" in ms:
            loss += weights.get(task, 1.0) * ms["loss"]
        s = spec(task)
        if s.primary in ms and not np.isnan(ms[s.primary]):
            scores.append(ms[s.primary] if s.higher_is_better else 1.0 - ms[s.primary])
    flat["val_loss"] = float(loss)
    flat["val_score"] = float(np.mean(scores)) if scores else float("nan")
    return flat
