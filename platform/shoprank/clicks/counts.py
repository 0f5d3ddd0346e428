"""In-memory click counts of a log: the source of the click features in ``shoprank eval --clicks``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from shoprank.clicks.features import ClickRequest, QueryClicks
from shoprank.clicks.lookup import QueryLookup
from shoprank.clicks.text import compact_query


@dataclass
class ClickCounts:
    """The counting side: lookups over one stretch of the click log, and who clicked what.

    A :class:`~shoprank.clicks.features.ClickFeatureSource`: :meth:`lookup` hands the feature code
    the same tables the store's reader reads from the online store.
    """

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
        for u, qq, ii in zip(log_users(log), q, i, strict=True):
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

    def view(self, query: str, user: str | None = None) -> QueryClicks:
        """The tables of ``query`` (and ``user``'s history) as the feature code reads them."""
        key = compact_query(query)
        own = self.share7.table.get(key)
        known = own is not None
        empty: dict[str, float] = {}
        tables = {
            "7d": own if known else empty,
            "2d": self.share2.table.get(key, empty),
            "12h": self.share12.table.get(key, empty),
            "all": self.share_all.table.get(key, empty),
        }
        near = [] if known else [(sim, self.neighbours.table[k]) for sim, k in self.neighbours.nearest(query)]
        popular = {"7d": self.share7.popularity, "2d": self.share2.popularity, "12h": self.share12.popularity}
        clicked = self.user_items.get((user, key), frozenset()) if user is not None else frozenset()
        seen = self.user_any.get(user, frozenset()) if user is not None else frozenset()
        return QueryClicks(known, tables, self.words.word_tables(query), near, popular, clicked, seen)

    def lookup(self, requests: Sequence[ClickRequest]) -> list[QueryClicks]:
        return [self.view(r.query, r.user_hash) for r in requests]


def log_users(log: pl.DataFrame) -> list[str | None]:
    """The ``user_hash`` column, or None per row when the log has none."""
    return log["user_hash"].to_list() if "user_hash" in log.columns else [None] * log.height
