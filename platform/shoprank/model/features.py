"""Numeric features the ranker sees besides text: item price/rating/popularity and month."""

from __future__ import annotations

import numpy as np

NUM_ITEM_FEATURES = 3
NUM_MONTH_FEATURES = 2


def item_numeric_features(
    price: np.ndarray | list[float | None],
    rating: np.ndarray | list[float | None],
    popularity: np.ndarray | list[float | None],
) -> np.ndarray:
    """[N, 3] float32: log-scaled price, rating in 0..1 (0.5 when unknown), log popularity."""
    p = np.nan_to_num(np.asarray(price, dtype=np.float64), nan=0.0).clip(min=0.0)
    r = np.asarray(rating, dtype=np.float64)
    r = np.where(np.isnan(r), 2.5, r).clip(0.0, 5.0)
    pop = np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0).clip(min=0.0)
    return np.stack([np.log1p(p) / 10.0, r / 5.0, np.log1p(pop) / 10.0], axis=1).astype(np.float32)


def month_features(month: np.ndarray | list[int] | int, n: int | None = None) -> np.ndarray:
    """[N, 2] float32 cyclic encoding of month-of-year (1..12); 0 means "no month" -> zeros."""
    m = np.full(n, month) if np.isscalar(month) and n is not None else np.asarray(month)
    m = m.astype(np.float64).reshape(-1)
    angle = 2.0 * np.pi * (m - 1.0) / 12.0
    feats = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    feats[m == 0] = 0.0
    return feats.astype(np.float32)
