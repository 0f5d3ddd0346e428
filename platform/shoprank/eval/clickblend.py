"""A learned blend for ranking a catalogue from a click log: counting features + the model.

Each (query, candidate item) gets a few features — the item's share of the query's clicks
under four time decays, the trigram-neighbour and single-word back-offs for queries never
seen whole, the item's recent popularity overall, the model's rank, BM25, and whether this
user already clicked the item (for this query, for any) — and a linear score over them. The
weights are fitted with a listwise softmax (the clicked item against every other candidate)
on a *later* period of the training log, counted from the earlier one, so they learn how much
to trust each signal going forward; then the counts are rebuilt from the whole training log
for the test period. Candidates: the union of the lookup's, the model's and the popular top
items.

Every click is ranked from the clicks strictly before it. The user features always take in the
user's earlier clicks (the session a search service knows); with ``online`` the counts do too,
as a live service's counters would, otherwise they stay as the history left them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from shoprank.eval.baselines import BM25, QueryLookup, compact_query

FEATURES = (
    "share_7d",  # log share of the query's clicks, 7-day half-life
    "share_2d",
    "share_all",  # no decay
    "share_7d_x_log_clicks",  # trust a share more when the query has many clicks
    "neighbours",  # nearest known queries by trigrams (queries never seen whole)
    "words",  # single-word back-off
    "popular_7d",  # log share of all clicks
    "popular_2d",
    "model_rank",  # 1 / (1 + rank / 10), 0 beyond the model's list
    "model_log_rank",
    "model_rank_if_known",  # the model's rank, on queries the log knows
    "bm25",  # over the query's best item
    "user_clicked",  # this user already clicked the item for this query
    "share_12h",  # what the query's searchers click in the last hours
    "popular_12h",
    "user_clicked_any",  # this user already clicked the item, for any query
)
EPS = 1e-3
CANDIDATES = 100
RankFn = Callable[[list[str]], dict[str, list[str]]]


@dataclass
class ClickCounts:
    """The counting side: lookups over one stretch of the click log, and who clicked what."""

    share7: QueryLookup
    share2: QueryLookup
    share_all: QueryLookup
    neighbours: QueryLookup
    words: QueryLookup
    share12: QueryLookup
    user_items: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))  # per query
    user_any: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # for any query

    @classmethod
    def of(cls, log: pl.DataFrame) -> ClickCounts:
        q, i, t = log["query"].to_list(), log["item_id"].to_list(), log["timestamp"].to_list()
        counts = cls(
            QueryLookup(q, i, t, half_life_days=7.0),
            QueryLookup(q, i, t, half_life_days=2.0),
            QueryLookup(q, i),
            QueryLookup(q, i, t, half_life_days=7.0, neighbour_weight=1.0),
            QueryLookup(q, i, t, half_life_days=7.0, word_weight=1.0),
            QueryLookup(q, i, t, half_life_days=0.5),
        )
        for u, qq, ii in zip(_users(log), q, i, strict=True):
            counts.saw(u, qq, ii)
        return counts

    def add(self, user: str | None, query: str, item: str, timestamp: object) -> None:
        """Count one more click in every lookup (the live counters of a search service)."""
        for lookup in (self.share7, self.share2, self.share_all, self.neighbours, self.words, self.share12):
            lookup.add(query, item, timestamp)
        self.saw(user, query, item)

    def saw(self, user: str | None, query: str, item: str) -> None:
        """Record that ``user`` clicked ``item`` for ``query`` (the user features of later clicks)."""
        if user is not None:
            self.user_items[(user, compact_query(query))].add(item)
            self.user_any[user].add(item)


def _users(log: pl.DataFrame) -> list[str | None]:
    return log["user_hash"].to_list() if "user_hash" in log.columns else [None] * log.height


def _log_share(counter: Counter[str], total: float, item: str) -> float:
    return float(np.log(counter.get(item, 0.0) / max(total, 1e-12) + 1e-6))


USER, USER_ANY = FEATURES.index("user_clicked"), FEATURES.index("user_clicked_any")


def features(
    c: ClickCounts, bm25: BM25, item_index: dict[str, int], query: str, ranked: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Candidates for ``query`` and their feature rows (one column per name in FEATURES; the
    two user columns are 0 here: they depend on who searched, see ``ClickBlend._walk``)."""
    key = compact_query(query)
    known = key in c.share7.table
    clicks = float(sum(c.share_all.table[key].values())) if known else 0.0
    s7, s2, sa = c.share7.scores(query), c.share2.scores(query), c.share_all.scores(query)
    near = c.neighbours.scores(query) if not known else Counter()
    words = c.words.scores(query)
    p7, p2, p12 = c.share7.popularity, c.share2.popularity, c.share12.popularity
    n7, n2, n12 = sum(p7.values()), sum(p2.values()), sum(p12.values())
    s12 = c.share12.scores(query)
    rank = {x: r for r, x in enumerate(ranked)}
    bm = bm25.scores(query)
    top = max(float(bm.max()), 1e-9) if len(bm) else 1.0
    cands = list(
        dict.fromkeys(
            [
                *c.neighbours.rank(query, CANDIDATES),
                *c.words.rank(query, CANDIDATES),
                *ranked[:CANDIDATES],
                *c.share7.popular(CANDIDATES),
            ]
        )
    )
    rows = np.empty((len(cands), len(FEATURES)), dtype=np.float32)
    for n, it in enumerate(cands):
        r = rank.get(it)
        mr = 1.0 / (1.0 + r / 10.0) if r is not None else 0.0
        share = float(np.log(s7.get(it, 0.0) + EPS))
        rows[n] = (
            share,
            np.log(s2.get(it, 0.0) + EPS),
            np.log(sa.get(it, 0.0) + EPS),
            share * np.log1p(clicks),
            np.log(near.get(it, 0.0) + EPS),
            np.log(max(words.get(it, 0.0) - s7.get(it, 0.0), 0.0) + EPS),
            _log_share(p7, n7, it),
            _log_share(p2, n2, it),
            mr,
            np.log1p(r if r is not None else 2 * CANDIDATES),
            mr if known else 0.0,
            bm[item_index[it]] / top if it in item_index else 0.0,
            0.0,
            np.log(s12.get(it, 0.0) + EPS),
            _log_share(p12, n12, it),
            0.0,
        )
    return cands, rows


class ClickBlend:
    """Linear weights over FEATURES, fitted listwise on a later stretch of the training log."""

    def __init__(
        self, items: pl.DataFrame, rank: RankFn, l2: float = 1e-3, use_user: bool = True, online: bool = False
    ) -> None:
        self.ids = items["item_id"].to_list()
        self.index = {i: n for n, i in enumerate(self.ids)}
        self.bm25 = BM25(items["item"].to_list())
        self.rank_fn, self.l2, self.use_user, self.online = rank, l2, use_user, online
        self.weights = np.zeros(len(FEATURES), dtype=np.float32)
        self.mean = np.zeros(len(FEATURES), dtype=np.float32)
        self.scale = np.ones(len(FEATURES), dtype=np.float32)
        self.fitted_on = 0

    def _walk(self, counts: ClickCounts, clicks: pl.DataFrame) -> list[tuple[list[str], np.ndarray, str]]:
        """(candidates, features, clicked item) for every click of ``clicks`` (in time order).

        Each click is ranked from the clicks strictly before it: once the clock moves past a
        click it joins its user's history, and with ``online`` every count too, as a search
        service's live counters would have it when the next search came.
        """
        ranked = self.rank_fn(list(dict.fromkeys(clicks["query"].to_list())))
        per_query: dict[str, tuple[list[str], np.ndarray]] = {}  # while the counts stay fixed
        out = []
        ts = clicks["timestamp"].to_list() if "timestamp" in clicks.columns else [None] * clicks.height
        rows = zip(_users(clicks), clicks["query"].to_list(), clicks["item_id"].to_list(), ts, strict=True)
        pending: list[tuple[str | None, str, str, object]] = []
        for u, q, i, t in rows:
            if pending and (t is None or t != pending[-1][3]):  # the clock moved: count what it passed
                self._pass(counts, pending)
                if self.online:  # every count moved: features are computed afresh
                    per_query.clear()
                pending = []
            if q not in per_query:
                per_query[q] = features(counts, self.bm25, self.index, q, ranked.get(q, []))
            cands, x = per_query[q]
            clicked = counts.user_items.get((u, compact_query(q))) if self.use_user and u is not None else None
            seen = counts.user_any.get(u) if self.use_user and u is not None else None
            if clicked or seen:
                x = x.copy()
                x[:, USER] = [it in (clicked or ()) for it in cands]
                x[:, USER_ANY] = [it in (seen or ()) for it in cands]
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
        walked = [(c, x, c.index(i)) for c, x, i in self._walk(ClickCounts.of(history), _by_time(later)) if i in c]
        if not walked:
            raise ValueError("no click of the fitting period is among its candidates")
        allx = np.concatenate([x for _, x, _ in walked])
        self.mean, self.scale = allx.mean(0), allx.std(0) + 1e-6
        width = max(len(c) for c, _, _ in walked)
        xs = np.zeros((len(walked), width, len(FEATURES)), dtype=np.float32)
        mask = np.zeros((len(walked), width), dtype=bool)
        for n, (_, x, _) in enumerate(walked):
            xs[n, : len(x)] = (x - self.mean) / self.scale
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
        self.weights = w.detach().numpy()
        self.fitted_on = len(walked)
        return self

    def rank(self, history: pl.DataFrame, clicks: pl.DataFrame, k: int = 100) -> list[list[str]]:
        """Top-k items for every click of ``clicks`` (in its row order), counts from ``history``."""
        ordered = _by_time(clicks.with_row_index("__row"))
        out: list[list[str]] = [[] for _ in range(clicks.height)]
        walked = self._walk(ClickCounts.of(history), ordered)
        for row, (cands, x, _) in zip(ordered["__row"].to_list(), walked, strict=True):
            s = ((x - self.mean) / self.scale) @ self.weights
            out[row] = [cands[j] for j in np.lexsort((np.array(cands), -s))[:k]]
        return out


def _by_time(clicks: pl.DataFrame) -> pl.DataFrame:
    return clicks.sort("timestamp", maintain_order=True) if "timestamp" in clicks.columns else clicks
