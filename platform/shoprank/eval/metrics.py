"""Evaluation metrics: ranking metrics in NumPy, F1/AUC from scikit-learn, Spearman from SciPy.
Conventions are stated per function.

Ranking metrics take one query at a time (``*_at_k``) or groups (``mean_*``); empty input
returns ``nan`` rather than a misleading 0 or 1.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import f1_score, roc_auc_score


def rmse(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> float:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch {t.shape} vs {p.shape}")
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")


def dcg_at_k(gains_in_rank_order: np.ndarray, k: int) -> float:
    """Σ_{i<k} (2^g_i − 1) / log2(i + 2)."""
    g = np.asarray(gains_in_rank_order, dtype=np.float64)[:k]
    return float(np.sum((2.0**g - 1.0) / np.log2(np.arange(2, g.size + 2))))


def ndcg_at_k(y_true: Sequence[float] | np.ndarray, y_score: Sequence[float] | np.ndarray, k: int = 10) -> float:
    """Graded nDCG@k of one query (exponential gain); ties in score keep input order.

    A query whose labels are all zero has no ideal ordering: returns nan.
    """
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    ideal = dcg_at_k(np.sort(t)[::-1], k)
    if ideal <= 0:
        return float("nan")
    return dcg_at_k(t[order], k) / ideal


def mean_ndcg_at_k(groups: Sequence[Hashable], y_true: np.ndarray, y_score: np.ndarray, k: int = 10) -> float:
    """Mean nDCG@k over queries (rows grouped by ``groups``), skipping queries with no gain."""
    g = np.asarray(groups)
    t, s = np.asarray(y_true, dtype=np.float64), np.asarray(y_score, dtype=np.float64)
    vals = []
    for key in np.unique(g):
        m = g == key
        v = ndcg_at_k(t[m], s[m], k)
        if not np.isnan(v):
            vals.append(v)
    return float(np.mean(vals)) if vals else float("nan")


def average_precision_at_k(relevant: Sequence[Hashable] | set, ranked: Sequence[Hashable], k: int = 5) -> float:
    """AP@k = Σ_{i≤k} P(i)·rel(i) / min(|relevant|, k) (Kaggle's MAP@k convention)."""
    rel = set(relevant)
    if not rel:
        return float("nan")
    hits, score, seen = 0, 0.0, set()
    for i, item in enumerate(list(ranked)[:k]):
        if item in rel and item not in seen:
            hits += 1
            score += hits / (i + 1.0)
        seen.add(item)
    return score / min(len(rel), k)


def map_at_k(relevant: Sequence[Sequence[Hashable]], ranked: Sequence[Sequence[Hashable]], k: int = 5) -> float:
    vals = [average_precision_at_k(r, p, k) for r, p in zip(relevant, ranked, strict=True)]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def recall_at_k(relevant: Sequence[Hashable] | set, ranked: Sequence[Hashable], k: int = 100) -> float:
    """Fraction of relevant items in the top k."""
    rel = set(relevant)
    if not rel:
        return float("nan")
    return len(rel & set(list(ranked)[:k])) / len(rel)


def mean_recall_at_k(
    relevant: Sequence[Sequence[Hashable]], ranked: Sequence[Sequence[Hashable]], k: int = 100
) -> float:
    vals = [recall_at_k(r, p, k) for r, p in zip(relevant, ranked, strict=True)]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch {t.shape} vs {p.shape}")
    return float(np.mean(t == p)) if t.size else float("nan")


def macro_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Unweighted mean F1 over the classes that occur in ``y_true`` or ``y_pred``."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0:
        return float("nan")
    labels = np.unique(np.concatenate([t, p]))
    return float(f1_score(t, p, labels=labels, average="macro", zero_division=0.0))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks); nan if either side is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def roc_auc(y_true: Sequence[float] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan with one class."""
    t = np.asarray(y_true, dtype=np.float64) > 0.5
    s = np.asarray(y_score, dtype=np.float64)
    if t.all() or not t.any():
        return float("nan")
    return float(roc_auc_score(t, s))
