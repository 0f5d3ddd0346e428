"""Per-task predictions and metrics on example frames (``shoprank.train.tasks`` schema).

Used twice: by the training loop for validation (early stopping) and by ``shoprank eval``
on the held-out test split. Texts are embedded once per unique string.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from shoprank.eval import metrics as M
from shoprank.model.features import item_numeric_features, month_features
from shoprank.model.lexical import lexical_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.text import title_of

# The primary metric of each task and whether higher is better (val_score uses these).
PRIMARY: dict[str, tuple[str, bool]] = {
    "intent": ("accuracy", True),
    "category": ("accuracy", True),
    "season": ("accuracy", True),
    "relevance": ("rmse", False),
    "click": ("auc", True),
    "retrieval": ("recall@10", True),
    "demand": ("rmse", False),
}


def embed_unique(model: MultiTaskModel, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Embeddings [N, d] for ``texts``, computing each distinct text once."""
    uniq = list(dict.fromkeys(texts))
    cache: dict[str, np.ndarray] | None = getattr(model, "embedding_cache", None)  # set by the eval runner
    if cache is not None:
        todo = [t for t in uniq if t not in cache]
        if todo:
            cache.update(zip(todo, model.embed(todo, batch_size=batch_size), strict=True))
        if not texts:
            return np.zeros((0, model.encoder.dim), np.float32)
        return np.stack([cache[t] for t in texts])
    emb = model.embed(uniq, batch_size=batch_size) if uniq else np.zeros((0, model.encoder.dim), np.float32)
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[t] for t in texts]] if texts else emb


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
def pair_raw(model: MultiTaskModel, task: str, df: pl.DataFrame, batch_size: int = 512) -> np.ndarray:
    """Raw head output per row (relevance / demand value, click logit), lexical term included."""
    model.eval()
    i = embed_unique(model, df["item"].to_list())
    if task == "demand":
        q = np.zeros_like(i)
    else:
        q = embed_unique(model, df["query"].to_list())
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
def class_logits(model: MultiTaskModel, task: str, df: pl.DataFrame) -> np.ndarray:
    model.eval()
    texts = df["query"].to_list() if task == "intent" else df["item"].to_list()
    emb = torch.as_tensor(embed_unique(model, texts), device=model.device)
    return model.class_logits(task, emb).float().cpu().numpy()


def retrieval_metrics(model: MultiTaskModel, df: pl.DataFrame, chunk: int = 32) -> dict[str, float]:
    """recall@10 / MRR of each query's relevant items among all items of the frame, and the
    in-chunk InfoNCE loss (the training loss, for val_loss)."""
    items = list(dict.fromkeys(df["item_id"].to_list()))
    ipos = {k: n for n, k in enumerate(items)}
    first_text = dict(zip(df["item_id"].to_list(), df["item"].to_list(), strict=True))
    iemb = embed_unique(model, [first_text[k] for k in items])
    queries = list(dict.fromkeys(df["query"].to_list()))
    qemb = embed_unique(model, queries)
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
    qrow = embed_unique(model, df["query"].to_list())
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


def task_metrics(model: MultiTaskModel, task: str, df: pl.DataFrame) -> dict[str, float]:
    """Metrics of one task on one split, plus ``loss`` (the training loss on those rows)."""
    if df.is_empty():
        return {}
    y = df["label"].to_numpy()
    if task in ("intent", "category", "season"):
        logits = class_logits(model, task, df)
        pred = logits.argmax(1)
        loss = float(F.cross_entropy(torch.as_tensor(logits), torch.tensor(y.astype(np.int64))))
        return {"accuracy": M.accuracy(y.astype(int), pred), "macro_f1": M.macro_f1(y.astype(int), pred), "loss": loss}
    if task == "retrieval":
        return retrieval_metrics(model, df)
    raw = pair_raw(model, task, df)
    if task == "click":
        p = 1.0 / (1.0 + np.exp(-raw))
        loss = float(F.binary_cross_entropy_with_logits(torch.as_tensor(raw), torch.tensor(y, dtype=torch.float32)))
        return {"auc": M.roc_auc(y, p), "accuracy": M.accuracy(y > 0.5, p > 0.5), "loss": loss}
    pred = np.clip(raw, 0.0, 1.0)
    out = {"rmse": M.rmse(y, pred), "loss": float(np.mean((raw - y) ** 2))}
    if task == "relevance":
        out["ndcg@10"] = M.mean_ndcg_at_k(df["group"].to_numpy(), y, pred, 10)
    return out


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
        name, higher = PRIMARY[task]
        if name in ms and not np.isnan(ms[name]):
            scores.append(ms[name] if higher else 1.0 - ms[name])
    flat["val_loss"] = float(loss)
    flat["val_score"] = float(np.mean(scores)) if scores else float("nan")
    return flat
