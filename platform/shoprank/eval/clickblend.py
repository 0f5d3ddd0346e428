"""A learned blend for ranking a catalogue from a click log: counting features + the model.

Each (query, candidate item) gets a few features — the item's share of the query's clicks
under four time decays, the trigram-neighbour and single-word back-offs for queries never
seen whole, the item's recent popularity overall, the model's rank, BM25, and whether this
user already clicked the item (for this query, for any) — and a linear score over them. The
weights are fitted with a listwise softmax (the clicked item against every other candidate)
on a *later* period of the training log, counted from the earlier one, so they learn how much
to trust each signal going forward; then the counts are rebuilt from the whole training log
for the test period. The features and the blend's score are :mod:`shoprank.clicks.features`'
(the served ranker's too); the counts here are in memory (:class:`ClickCounts`).

The model's ranking of a click's query is for the click's month (a search service sends the month;
the pair heads read it). Every click is ranked from the clicks strictly before it. The user features always take in the
user's earlier clicks (the session a search service knows); with ``online`` the counts do too,
as a live service's counters would, otherwise they stay as the history left them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch

from shoprank.clicks.bm25 import BM25
from shoprank.clicks.counts import ClickCounts, log_users
from shoprank.clicks.features import FEATURES, BlendWeights, query_features, with_user
from shoprank.clicks.text import compact_query

__all__ = ["FEATURES", "ClickBlend", "ClickCounts", "RankFn", "click_months"]
# The model's ranking of the catalogue per (query, month of the search): what the served ranker
# computes for a search in that month (the pair heads take the month as an input).
RankKey = tuple[str, int]
RankFn = Callable[[list[RankKey]], dict[RankKey, list[str]]]


def click_months(clicks: pl.DataFrame) -> list[int]:
    """Each click's month (1..12) from its ``timestamp``, 0 where it has none (as a search with no month)."""
    if "timestamp" not in clicks.columns:
        return [0] * clicks.height
    return clicks["timestamp"].dt.month().fill_null(0).cast(pl.Int64).to_list()


class ClickBlend:
    """Linear weights over FEATURES, fitted listwise on a later stretch of the training log."""

    def __init__(
        self, items: pl.DataFrame, rank: RankFn, l2: float = 1e-3, use_user: bool = True, online: bool = False
    ) -> None:
        self.ids = items["item_id"].to_list()
        self.index = {i: n for n, i in enumerate(self.ids)}
        self.bm25 = BM25(items["item"].to_list())
        self.rank_fn, self.l2, self.use_user, self.online = rank, l2, use_user, online
        self.blend = BlendWeights.zeros()
        self.fitted_on = 0

    @property
    def weights(self) -> np.ndarray:
        return self.blend.weights

    @weights.setter
    def weights(self, value: np.ndarray) -> None:
        self.blend.weights = value

    @property
    def mean(self) -> np.ndarray:
        return self.blend.mean

    @property
    def scale(self) -> np.ndarray:
        return self.blend.scale

    def walk(self, counts: ClickCounts, clicks: pl.DataFrame) -> list[tuple[list[str], np.ndarray, str]]:
        """(candidates, features, clicked item) for every click of ``clicks`` (in time order).

        Each click is ranked from the clicks strictly before it: once the clock moves past a
        click it joins its user's history, and with ``online`` every count too, as a search
        service's live counters would have it when the next search came.
        """
        keys = list(zip(clicks["query"].to_list(), click_months(clicks), strict=True))
        ranked = self.rank_fn(list(dict.fromkeys(keys)))
        per_query: dict[RankKey, tuple[list[str], np.ndarray]] = {}  # while the counts stay fixed
        out = []
        ts = clicks["timestamp"].to_list() if "timestamp" in clicks.columns else [None] * clicks.height
        rows = zip(log_users(clicks), keys, clicks["item_id"].to_list(), ts, strict=True)
        pending: list[tuple[str | None, str, str, object]] = []
        for u, key, i, t in rows:
            q = key[0]
            if pending and (t is None or t != pending[-1][3]):  # the clock moved: count what it passed
                self._pass(counts, pending)
                if self.online:  # every count moved: features are computed afresh
                    per_query.clear()
                pending = []
            if key not in per_query:
                per_query[key] = query_features(counts.view(q), self.bm25, self.index, q, ranked.get(key, []))
            cands, x = per_query[key]
            if self.use_user and u is not None:
                x = with_user(cands, x, counts.user_items.get((u, compact_query(q))), counts.user_any.get(u))
            out.append((cands, x, i))
            pending.append((u, q, i, t))
        return out

    def _pass(self, counts: ClickCounts, clicks: list[tuple[str | None, str, str, object]]) -> None:
        """The clock passed ``clicks``: into the user histories, and with ``online`` every count."""
        for u, q, i, t in clicks:
            if self.online:
                counts.add(u, q, i, t)
            else:
                counts.saw(u, q, i)

    def fit(self, history: pl.DataFrame, later: pl.DataFrame) -> ClickBlend:
        """Counts from ``history``; weights that rank each click of ``later`` first."""
        walked = [(c, x, c.index(i)) for c, x, i in self.walk(ClickCounts.of(history), by_time(later)) if i in c]
        if not walked:
            raise ValueError("no click of the fitting period is among its candidates")
        allx = np.concatenate([x for _, x, _ in walked])
        mean, scale = allx.mean(0), allx.std(0) + 1e-6
        width = max(len(c) for c, _, _ in walked)
        xs = np.zeros((len(walked), width, len(FEATURES)), dtype=np.float32)
        mask = np.zeros((len(walked), width), dtype=bool)
        for n, (_, x, _) in enumerate(walked):
            xs[n, : len(x)] = (x - mean) / scale
            mask[n, : len(x)] = True
        x_t, m_t = torch.from_numpy(xs), torch.from_numpy(mask)
        y_t = torch.tensor([t for _, _, t in walked])
        w = torch.zeros(len(FEATURES), requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            logits = (x_t @ w).masked_fill(~m_t, -1e9)
            out = torch.nn.functional.cross_entropy(logits, y_t) + self.l2 * (w**2).sum()
            out.backward()
            return out

        opt.step(loss)
        self.blend = BlendWeights(w.detach().numpy(), mean, scale)
        self.fitted_on = len(walked)
        return self

    def rank(self, history: pl.DataFrame, clicks: pl.DataFrame, k: int = 100) -> list[list[str]]:
        """Top-k items for every click of ``clicks`` (in its row order), counts from ``history``."""
        ordered = by_time(clicks.with_row_index("__row"))
        out: list[list[str]] = [[] for _ in range(clicks.height)]
        walked = self.walk(ClickCounts.of(history), ordered)
        for row, (cands, x, _) in zip(ordered["__row"].to_list(), walked, strict=True):
            out[row] = self.blend.rank(cands, x, k)
        return out


def by_time(clicks: pl.DataFrame) -> pl.DataFrame:
    return clicks.sort("timestamp", maintain_order=True) if "timestamp" in clicks.columns else clicks
