"""The learned click blend's features and score, one implementation for every source of counts.

A source (:class:`ClickFeatureSource`) answers a batch of :class:`ClickRequest` (query, hashed
user) with one :class:`QueryClicks` each: the raw click tables the features need. The in-memory
counts (:class:`shoprank.clicks.counts.ClickCounts`, ``shoprank eval --clicks``) and the online
store (:class:`shoprank.store.reader.StoreClickSource`) both implement it; everything from the
tables on — shares, back-offs, candidates, feature rows, the blend's score and ranking — is the
code below, whichever source fed it.

Each (query, candidate item) gets the item's share of the query's clicks under four time decays,
the trigram-neighbour and single-word back-offs for queries never seen whole, the item's recent
popularity overall, the model's rank, BM25, and whether this user already clicked the item (for
this query, for any). Candidates: the union of the lookups', the model's and the popular top items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from shoprank.clicks.bm25 import BM25
from shoprank.clicks.lookup import click_scores, top_items

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
CLICK_BLEND_FILE = "click_blend.json"  # fitted weights in a checkpoint dir (BlendWeights.to_dict(); eval writes it)
USER, USER_ANY = FEATURES.index("user_clicked"), FEATURES.index("user_clicked_any")
WINDOWS = ("7d", "2d", "12h", "all")  # click tables by half-life (7 days, 2 days, 12 hours) and undecayed

Table = Mapping[str, float]  # item id -> (decayed) clicks


class ClickRequest(NamedTuple):
    query: str
    user_hash: str | None = None  # the salted hash (shoprank.hashing.hash_id), never the raw id


@dataclass(frozen=True)
class QueryClicks:
    """What the features read for one (query, user): raw tables, no shares yet.

    ``tables``: window (:data:`WINDOWS`) -> the query's own clicks (empty when the query is
    unknown); ``words``: the 7-day table of each word of the query (``tokenize`` order, repeats
    kept; None for a word never clicked); ``neighbours``: (trigram similarity, 7-day table) of the
    nearest known queries, best first (only for unknown queries); ``popular``: window -> every
    click (7d, 2d, 12h); ``user_query``/``user_any``: items this user clicked for this query / any.
    """

    known: bool
    tables: Mapping[str, Table]
    words: Sequence[Table | None]
    neighbours: Sequence[tuple[float, Table]]
    popular: Mapping[str, Table]
    user_query: Collection[str] = frozenset()
    user_any: Collection[str] = frozenset()


class ClickFeatureSource(Protocol):
    """Where the counts come from: one :class:`QueryClicks` per request, in order."""

    def lookup(self, requests: Sequence[ClickRequest]) -> list[QueryClicks]: ...


def _log_share(values: np.ndarray, total: float) -> np.ndarray:
    """Log of each value's share of ``total`` (the popularity features)."""
    return np.log(values / max(total, 1e-12) + 1e-6)


def query_features(
    view: QueryClicks, bm25: BM25, item_index: Mapping[str, int], query: str, ranked: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Candidates for ``query`` and their feature rows (one column per name in FEATURES; the two
    user columns are 0 here: see :func:`with_user`). ``ranked``: the model's ranking of the
    catalogue for the query; ``bm25``/``item_index``: BM25 over the catalogue and item -> row."""
    known = view.known
    own7 = view.tables["7d"] if known else None
    clicks = float(sum(view.tables["all"].values())) if known else 0.0
    s7 = click_scores(own7)
    s2 = click_scores(view.tables["2d"] if known else None)
    sa = click_scores(view.tables["all"] if known else None)
    s12 = click_scores(view.tables["12h"] if known else None)
    near_or_own = click_scores(own7, view.neighbours, neighbour_weight=1.0)
    near = near_or_own if not known else Counter()
    words = click_scores(own7, words=view.words, word_weight=1.0)
    p7, p2, p12 = view.popular["7d"], view.popular["2d"], view.popular["12h"]
    n7, n2, n12 = sum(p7.values()), sum(p2.values()), sum(p12.values())
    rank = {x: r for r, x in enumerate(ranked)}
    bm = bm25.scores(query)
    top = max(float(bm.max()), 1e-9) if len(bm) else 1.0
    cands = list(
        dict.fromkeys(
            [
                *top_items(near_or_own, CANDIDATES),
                *top_items(words, CANDIDATES),
                *ranked[:CANDIDATES],
                *top_items(p7, CANDIDATES),
            ]
        )
    )
    n = len(cands)

    def col(table: Mapping[str, float]) -> np.ndarray:  # each candidate's value in ``table`` (0 if absent)
        return np.fromiter((table.get(it, 0.0) for it in cands), dtype=np.float64, count=n)

    r = np.fromiter((rank.get(it, -1) for it in cands), dtype=np.int64, count=n)
    has_rank = r >= 0
    mr = np.where(has_rank, 1.0 / (1.0 + r / 10.0), 0.0)
    v7 = col(s7)
    share = np.log(v7 + EPS)
    at = np.fromiter((item_index.get(it, -1) for it in cands), dtype=np.int64, count=n)
    rows = np.zeros((n, len(FEATURES)), dtype=np.float32)  # the user columns stay 0 (see with_user)
    rows[:, 0] = share
    rows[:, 1] = np.log(col(s2) + EPS)
    rows[:, 2] = np.log(col(sa) + EPS)
    rows[:, 3] = share * np.log1p(clicks)
    rows[:, 4] = np.log(col(near) + EPS)
    rows[:, 5] = np.log(np.maximum(col(words) - v7, 0.0) + EPS)
    rows[:, 6] = _log_share(col(p7), n7)
    rows[:, 7] = _log_share(col(p2), n2)
    rows[:, 8] = mr
    rows[:, 9] = np.log1p(np.where(has_rank, r, 2 * CANDIDATES))
    rows[:, 10] = mr if known else 0.0
    rows[:, 11] = np.where(at >= 0, bm[np.maximum(at, 0)] / top, 0.0) if len(bm) else 0.0
    rows[:, 13] = np.log(col(s12) + EPS)
    rows[:, 14] = _log_share(col(p12), n12)
    return cands, rows


def with_user(
    cands: Sequence[str], rows: np.ndarray, clicked: Collection[str] | None, seen: Collection[str] | None
) -> np.ndarray:
    """``rows`` with the user columns set: ``clicked`` (this query) and ``seen`` (any query) are the
    items the user clicked before; a copy when either is non-empty, else ``rows`` itself."""
    if not (clicked or seen):
        return rows
    rows = rows.copy()
    rows[:, USER] = [it in (clicked or ()) for it in cands]
    rows[:, USER_ANY] = [it in (seen or ()) for it in cands]
    return rows


def click_features(
    view: QueryClicks,
    bm25: BM25,
    item_index: Mapping[str, int],
    query: str,
    ranked: Sequence[str],
    use_user: bool = True,
) -> tuple[list[str], np.ndarray]:
    """:func:`query_features` with the user columns from the view (``use_user``)."""
    cands, rows = query_features(view, bm25, item_index, query, ranked)
    if use_user:
        rows = with_user(cands, rows, view.user_query, view.user_any)
    return cands, rows


@dataclass
class BlendWeights:
    """The learned blend: standardise each feature (``mean``, ``scale``), then a dot with ``weights``."""

    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def zeros(cls) -> BlendWeights:
        n = len(FEATURES)
        return cls(np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32), np.ones(n, dtype=np.float32))

    def score(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.scale) @ self.weights

    def rank(self, cands: Sequence[str], rows: np.ndarray, k: int) -> list[str]:
        """The ``k`` best candidates by score, ties by item id."""
        return [c for c, _ in self.ranked(cands, rows, k)]

    def ranked(self, cands: Sequence[str], rows: np.ndarray, k: int) -> list[tuple[str, float]]:
        """:meth:`rank` with each candidate's score."""
        s = self.score(rows)
        return [(cands[j], float(s[j])) for j in np.lexsort((np.array(cands), -s))[:k]]

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Per feature name: weight, mean, scale (what a checkpoint or serving config stores)."""
        return {f: {"weight": float(w), "mean": float(m), "scale": float(s)}
                for f, w, m, s in zip(FEATURES, self.weights, self.mean, self.scale, strict=True)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, float]]) -> BlendWeights:
        missing = [f for f in FEATURES if f not in d]
        if missing:
            raise ValueError(f"blend weights miss feature(s) {missing}")
        col = lambda k: np.array([d[f][k] for f in FEATURES], dtype=np.float32)  # noqa: E731
        return cls(col("weight"), col("mean"), col("scale"))
