"""Top-k inner-product search over unit item embeddings, with hard filters.

Exact search (one matrix product for a whole batch of queries) below ``hnsw_threshold``
items; an HNSW graph (hnswlib, inner-product space) above it; past ``compressed_threshold`` a
compressed IVF-PQ index with exact re-scoring over memory-mapped rows
(:mod:`shoprank.retrieval.compressed`: the rows then stay on disk, never copied in). Filters:

- no filter: exact matmul + argpartition, or HNSW ``knn_query`` for the whole batch;
- a filter keeping few items (fewer than ``exact_subset_max`` or a small fraction): exact search
  on the filtered subset, which is both exact and cheap;
- otherwise HNSW over-fetch (``n / selectivity``, with headroom) then filter, falling back to
  exact-on-subset when the over-fetch did not yield ``n`` hits; IVF-PQ filters inside the list scan
  (an ID bitmap), with the same fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class FilterSpec:
    """Hard filters; ``None`` fields do not filter. ``category`` is a case-insensitive path prefix."""

    category: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def is_empty(self) -> bool:
        return self.category is None and self.price_min is None and self.price_max is None and not self.in_stock


def build_hnsw(emb: np.ndarray, m: int = 32, ef_construction: int = 200, num_threads: int = -1) -> Any:
    """An hnswlib inner-product index over ``emb`` (labels are row positions)."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=int(emb.shape[1]))
    index.init_index(max_elements=int(emb.shape[0]), M=m, ef_construction=ef_construction, random_seed=0)
    index.add_items(np.ascontiguousarray(emb, dtype=np.float32), np.arange(emb.shape[0]), num_threads=num_threads)
    return index


def load_hnsw(path: str | Path, dim: int, num_items: int) -> Any:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(str(path), max_elements=num_items)
    return index


def exact_topk(queries: np.ndarray, emb: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``n`` by inner product for a batch: (positions [B, n], scores [B, n]), best first."""
    scores = queries @ emb.T  # [B, N]
    n = min(n, emb.shape[0])
    if n <= 0:
        return np.zeros((queries.shape[0], 0), np.int64), np.zeros((queries.shape[0], 0), np.float32)
    if n < emb.shape[0]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(emb.shape[0]), (queries.shape[0], 1))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(top, order, axis=1)


class VectorIndex:
    """Filtered top-k over an artefact's embeddings and item table."""

    def __init__(
        self,
        embeddings: np.ndarray,
        items: pl.DataFrame,
        hnsw: Any = None,
        *,
        hnsw_threshold: int = 50_000,
        ef_search: int = 256,
        exact_subset_max: int = 20_000,
        build_hnsw_if_missing: bool = True,
        compressed: Any = None,
    ) -> None:
        self.compressed = compressed  # a CompressedIndex: rows stay memory-mapped (any float dtype)
        self.embeddings = embeddings if compressed is not None else np.ascontiguousarray(embeddings, dtype=np.float32)
        self.n = int(self.embeddings.shape[0])
        self.hnsw_threshold = hnsw_threshold
        self.ef_search = ef_search
        self.exact_subset_max = exact_subset_max
        self.hnsw = hnsw
        if compressed is not None:
            self.hnsw = None
        elif self.n >= hnsw_threshold and self.hnsw is None and build_hnsw_if_missing:
            self.hnsw = build_hnsw(self.embeddings)
        if self.n < hnsw_threshold:
            self.hnsw = None  # small catalogue: exact is both exact and fast
        self._items = items
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # built on the first filter
        self._mask = lru_cache(maxsize=256)(self._compute_mask)

    @property
    def kind(self) -> str:
        return "ivfpq" if self.compressed is not None else "hnsw" if self.hnsw is not None else "exact"

    def _filter_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower-cased category paths, prices, in-stock flags), built once, on the first filtered search."""
        if self._columns is None:
            items = self._items
            category = np.array([(c or "").lower() for c in items["category_path"].to_list()], dtype=object)
            price = items["price"].cast(pl.Float64).to_numpy()
            price = np.where(np.isnan(price), np.nan, price) if price.dtype.kind == "f" else price.astype(float)
            self._columns = (category, price, items["in_stock"].fill_null(True).to_numpy().astype(bool))
        return self._columns

    def _compute_mask(self, f: FilterSpec) -> np.ndarray | None:
        if f.is_empty():
            return None
        category, price, in_stock = self._filter_columns()
        mask = np.ones(self.n, dtype=bool)
        if f.category:
            prefix = f.category.strip().lower()
            mask &= np.fromiter((c.startswith(prefix) for c in category), dtype=bool, count=self.n)
        if f.price_min is not None:
            mask &= price >= f.price_min  # unknown price (NaN) never passes a price filter
        if f.price_max is not None:
            mask &= price <= f.price_max
        if f.in_stock:
            mask &= in_stock
        return mask

    def mask(self, f: FilterSpec | None) -> np.ndarray | None:
        return None if f is None else self._mask(f)

    def search(
        self, queries: np.ndarray, n: int, filters: list[FilterSpec | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query row: (positions, scores) of up to ``n`` best items passing its filter."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        filters = filters or [None] * q.shape[0]
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * q.shape[0]
        unfiltered = [b for b, f in enumerate(filters) if self.mask(f) is None]
        if unfiltered:
            for b, res in zip(unfiltered, self._search_all(q[unfiltered], n), strict=True):
                out[b] = res
        for b, f in enumerate(filters):
            if out[b] is None:
                out[b] = self._search_filtered(q[b], n, self.mask(f))  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    def _search_all(self, q: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        n = min(n, self.n)
        if self.compressed is not None:
            return self.compressed.search(q, n)
        if self.hnsw is None:
            pos, sc = exact_topk(q, self.embeddings, n)
            return list(zip(pos, sc, strict=True))
        self.hnsw.set_ef(max(self.ef_search, n))
        labels, dist = self.hnsw.knn_query(q, k=n, num_threads=1)
        return [(lab.astype(np.int64), (1.0 - d).astype(np.float32)) for lab, d in zip(labels, dist, strict=True)]

    def _search_filtered(self, q: np.ndarray, n: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kept = int(mask.sum())
        if kept == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.compressed is not None:
            if kept <= self.exact_subset_max:
                return self._exact_subset(q, n, mask)
            pos, sc = self.compressed.search(q[None, :], n, mask)[0]
            return (pos, sc) if len(pos) >= min(n, kept) else self._exact_subset(q, n, mask)
        if self.hnsw is None or kept <= self.exact_subset_max or kept < 0.05 * self.n:
            return self._exact_subset(q, n, mask)
        want = min(self.n, int(np.ceil(n * self.n / kept * 1.5)) + 16)
        self.hnsw.set_ef(max(self.ef_search, want))
        labels, dist = self.hnsw.knn_query(q[None, :], k=want, num_threads=1)
        lab, sc = labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
        keep = mask[lab]
        if keep.sum() >= min(n, kept):
            return lab[keep][:n], sc[keep][:n]
        return self._exact_subset(q, n, mask)

    def _exact_subset(self, q: np.ndarray, n: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(mask)
        pos, sc = exact_topk(q[None, :], np.asarray(self.embeddings[idx], dtype=np.float32), n)
        return idx[pos[0]], sc[0]
