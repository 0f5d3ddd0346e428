"""The query-count lookup and the scoring every click source shares.

:func:`click_scores` turns click tables (item -> decayed clicks) into item scores: the item's
share of the query's clicks, else of its nearest known queries' (weighted by similarity²),
plus a back-off over the query's words. :func:`nearest_queries` picks those neighbours from
trigram overlaps. :class:`QueryLookup` keeps the tables in memory; the store's reader
(:mod:`shoprank.store.reader`) reads the same tables from the store and scores them with the
same two functions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from shoprank.clicks.text import compact_query, query_trigrams, tokenize

NEIGHBOURS = 3  # nearest known queries a query never seen whole backs off to
MIN_SIMILARITY = 0.4  # trigram Jaccard below which a known query is no neighbour


def days(timestamps: Sequence[object]) -> np.ndarray:
    """Timestamps as float days since the epoch (microsecond resolution)."""
    return np.asarray(timestamps, dtype="datetime64[us]").astype(np.int64) / 86400e6


def nearest_queries(
    n_grams: int, matches: Iterable[tuple[str, int, int]], min_similarity: float = MIN_SIMILARITY, k: int = NEIGHBOURS
) -> list[tuple[float, str]]:
    """(trigram Jaccard, known query) of the ``k`` closest, best first, from ``matches``: each known
    query sharing a trigram with the query, the number it shares and its own trigram count."""
    sims = [(s / (n_grams + m - s), key) for key, s, m in matches]
    return sorted((x for x in sims if x[0] >= min_similarity), key=lambda x: (-x[0], x[1]))[:k]


def click_scores(
    own: Mapping[str, float] | None,
    neighbours: Sequence[tuple[float, Mapping[str, float]]] = (),
    words: Sequence[Mapping[str, float] | None] = (),
    neighbour_weight: float = 0.0,
    word_weight: float = 0.0,
) -> Counter[str]:
    """Item -> score: share of the query's own clicks (``own``), else with ``neighbour_weight`` the
    neighbours' shares (``(similarity, table)``) x weight x similarity², plus with ``word_weight``
    each word's share x weight / number of words (``words``: one table or None per word of
    :func:`tokenize`, repeats included)."""
    out: Counter[str] = Counter()
    if own:
        n = sum(own.values())
        for i, v in own.items():
            out[i] += v / n
    elif neighbour_weight:
        for sim, cn in neighbours:
            n = sum(cn.values())
            for i, v in cn.items():
                out[i] += neighbour_weight * sim**2 * v / n
    if word_weight and words:
        for cw in words:
            if cw:
                n = sum(cw.values())
                for i, v in cw.items():
                    out[i] += word_weight * v / n / len(words)
    return out


def top_items(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` best items, ties by item id."""
    return [i for i, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]]


class QueryLookup:
    """Query-count lookup: the items most clicked for the query in the training log.

    ``half_life_days`` weights each click by 0.5^(age / half-life) (age against the newest
    training click), so what is popular *now* ranks first; ``word_weight`` adds a back-off
    over single query words; ``neighbour_weight`` backs a query never seen whole off to the
    ``neighbours`` known queries nearest in character trigrams (misspellings, extra words:
    "skyrom" -> "skyrim"), each weighted by similarity². With none of them (the defaults) this
    is the plain count lookup of the task's anchors.
    """

    def __init__(
        self,
        queries: Sequence[str],
        items: Sequence[str],
        timestamps: Sequence[object] | None = None,
        half_life_days: float | None = None,
        word_weight: float = 0.0,
        neighbour_weight: float = 0.0,
        neighbours: int = NEIGHBOURS,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.word_weight = word_weight
        self.neighbour_weight, self.neighbours, self.min_similarity = neighbour_weight, neighbours, min_similarity
        self.table: dict[str, Counter[str]] = defaultdict(Counter)
        self.words: dict[str, Counter[str]] = defaultdict(Counter)
        self.popularity: Counter[str] = Counter()
        self.half_life_days = half_life_days if timestamps is not None else None
        self._t_ref = 0.0  # decay reference (days): shares do not depend on it, only on ages
        weights = np.ones(len(queries))
        if self.half_life_days:
            ts = days(timestamps)
            self._t_ref = float(ts.max()) if len(ts) else 0.0
            weights = 0.5 ** ((self._t_ref - ts) / self.half_life_days)
        self._keys: list[str] = []
        self._grams: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = defaultdict(list)
        for q, i, w in zip(queries, items, weights, strict=True):
            self._count(q, i, float(w))

    def _count(self, query: str, item: str, w: float) -> None:
        key = compact_query(query)
        if key not in self.table:
            self._keys.append(key)
            if self.neighbour_weight:
                self._grams.append(query_trigrams(key))
                for g in self._grams[-1]:
                    self._postings[g].append(len(self._keys) - 1)
        self.table[key][item] += w
        self.popularity[item] += w
        if self.word_weight:
            for t in set(tokenize(query)):
                self.words[t][item] += w

    def add(self, query: str, item: str, timestamp: object = None) -> None:
        """Count one more click (a newer one, for a decayed lookup), as a live service would."""
        w = 1.0
        if self.half_life_days and timestamp is not None:
            w = float(0.5 ** ((self._t_ref - days([timestamp])[0]) / self.half_life_days))
        self._count(query, item, w)

    def nearest(self, query: str) -> list[tuple[float, str]]:
        """(trigram Jaccard, known query) of the closest known queries, best first."""
        grams = query_trigrams(compact_query(query))
        shared: Counter[int] = Counter()
        for g in grams:
            shared.update(self._postings.get(g, ()))
        matches = ((self._keys[n], s, len(self._grams[n])) for n, s in shared.items())
        return nearest_queries(len(grams), matches, self.min_similarity, self.neighbours)

    def word_tables(self, query: str) -> list[Counter[str] | None]:
        """The word table of each word of ``query`` (None for a word never clicked), repeats kept."""
        return [self.words.get(t) for t in tokenize(query)]

    def scores(self, query: str) -> Counter[str]:
        """Item -> score: share of the query's clicks, plus the word back-off."""
        own = self.table.get(compact_query(query))
        near = []
        if not own and self.neighbour_weight:
            near = [(sim, self.table[key]) for sim, key in self.nearest(query)]
        words = self.word_tables(query) if self.word_weight else []
        return click_scores(own, near, words, self.neighbour_weight, self.word_weight)

    def rank(self, query: str, k: int) -> list[str]:
        return top_items(self.scores(query), k)

    def popular(self, k: int) -> list[str]:
        return top_items(self.popularity, k)
