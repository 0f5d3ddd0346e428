"""Baselines the model is compared against: BM25, zero-shot MiniLM, popularity, query-count lookup.

All of them rank catalogue items for a query (``rank_*``) or score given (query, item) pairs
(``score_*``); none needs training beyond counting.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str | None) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def normalize_query(text: str | None) -> str:
    return " ".join(tokenize(text))


class BM25:
    """Okapi BM25 over a list of documents (k1=1.2, b=0.75)."""

    def __init__(self, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokenize(d)) for d in docs]
        self.lengths = np.array([sum(c.values()) for c in self.docs], dtype=np.float64)
        self.avgdl = float(self.lengths.mean()) if len(self.docs) else 0.0
        df: Counter[str] = Counter()
        for c in self.docs:
            df.update(c.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, c in enumerate(self.docs):
            for t, f in c.items():
                self.postings[t].append((i, f))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``."""
        out = np.zeros(len(self.docs), dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths / max(self.avgdl, 1e-9))
        for t in set(tokenize(query)):
            idf = self.idf.get(t)
            if idf is None:
                continue
            for i, f in self.postings[t]:
                out[i] += idf * f * (self.k1 + 1.0) / (f + norm[i])
        return out

    def score_doc(self, query: str, index: int) -> float:
        return float(self.scores(query)[index])


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


def compact_query(text: str | None) -> str:
    """Lower-case alphanumerics only, so "Call of Duty" and "callofduty" meet."""
    return "".join(tokenize(text))


def _trigrams(text: str) -> frozenset[str]:
    padded = f" {text} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _days(timestamps: Sequence[object]) -> np.ndarray:
    return np.asarray(timestamps, dtype="datetime64[us]").astype(np.int64) / 86400e6


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
        neighbours: int = 3,
        min_similarity: float = 0.4,
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
            ts = _days(timestamps)
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
                self._grams.append(_trigrams(key))
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
            w = float(0.5 ** ((self._t_ref - _days([timestamp])[0]) / self.half_life_days))
        self._count(query, item, w)

    def nearest(self, query: str) -> list[tuple[float, str]]:
        """(trigram Jaccard, known query) of the closest known queries, best first."""
        grams = _trigrams(compact_query(query))
        shared: Counter[int] = Counter()
        for g in grams:
            shared.update(self._postings.get(g, ()))
        sims = [(s / (len(grams) + len(self._grams[n]) - s), self._keys[n]) for n, s in shared.items()]
        return sorted((x for x in sims if x[0] >= self.min_similarity), key=lambda x: (-x[0], x[1]))[: self.neighbours]

    def scores(self, query: str) -> Counter[str]:
        """Item -> score: share of the query's clicks, plus the word back-off."""
        out: Counter[str] = Counter()
        c = self.table.get(compact_query(query))
        if c:
            n = sum(c.values())
            for i, v in c.items():
                out[i] += v / n
        elif self.neighbour_weight:
            for sim, key in self.nearest(query):
                cn = self.table[key]
                n = sum(cn.values())
                for i, v in cn.items():
                    out[i] += self.neighbour_weight * sim**2 * v / n
        toks = tokenize(query)
        if self.word_weight and toks:
            for t in toks:
                cw = self.words.get(t)
                if cw:
                    n = sum(cw.values())
                    for i, v in cw.items():
                        out[i] += self.word_weight * v / n / len(toks)
        return out

    def rank(self, query: str, k: int) -> list[str]:
        return [i for i, _ in sorted(self.scores(query).items(), key=lambda x: (-x[1], x[0]))[:k]]

    def popular(self, k: int) -> list[str]:
        return [i for i, _ in sorted(self.popularity.items(), key=lambda x: (-x[1], x[0]))[:k]]


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
