"""Baselines the model is compared against: BM25, zero-shot MiniLM, popularity, query-count lookup.

All of them rank catalogue items for a query (``rank_*``) or score given (query, item) pairs
(``score_*``); none needs training beyond counting. The counting pieces the click features share (BM25, the
query-count lookup, query normalisation) live in :mod:`shoprank.clicks` and are re-exported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from shoprank.clicks.bm25 import BM25
from shoprank.clicks.lookup import QueryLookup
from shoprank.clicks.text import compact_query, normalize_query, tokenize

__all__ = ["BM25", "QueryLookup", "back_off", "blend", "compact_query", "normalize_query", "score_pairs_bm25",
           "tokenize"]  # fmt: skip


def score_pairs_bm25(queries: Sequence[str], items: Sequence[str]) -> np.ndarray:
    """BM25 of each (query, item) pair, with IDF from the distinct items of the pairs."""
    uniq = list(dict.fromkeys(items))
    pos = {t: i for i, t in enumerate(uniq)}
    bm = BM25(uniq)
    cache: dict[str, np.ndarray] = {}
    out = np.empty(len(queries), dtype=np.float64)
    for n, (q, it) in enumerate(zip(queries, items, strict=True)):
        if q not in cache:
            cache[q] = bm.scores(q)
        out[n] = cache[q][pos[it]]
    return out


def blend(lookup_scores: Counter[str], model_ranked: Sequence[str], model_weight: float, k: int) -> list[str]:
    """Lookup scores plus ``model_weight`` x a rank-based model score (1 for the model's top item,
    falling as 1/(1+rank/10)); the model alone orders queries the lookup has never seen."""
    total: Counter[str] = Counter(lookup_scores)
    for r, i in enumerate(model_ranked):
        total[i] += model_weight / (1.0 + r / 10.0)
    return [i for i, _ in sorted(total.items(), key=lambda x: (-x[1], x[0]))[:k]]


def back_off(primary: list[str], fallback: Sequence[str], k: int) -> list[str]:
    """``primary`` first, then ``fallback`` items not already listed, up to ``k``."""
    out = list(primary[:k])
    seen = set(out)
    for i in fallback:
        if len(out) >= k:
            break
        if i not in seen:
            out.append(i)
            seen.add(i)
    return out
