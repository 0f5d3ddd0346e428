"""The store's key schema: what the click features of :mod:`shoprank.clicks.features` need, no more.

Every key starts with ``prefix`` (``StoreConfig.key_prefix``, default ``sr:``). ``{q}`` is the
compact query (:func:`shoprank.clicks.text.compact_query`: lower-case alphanumerics, so
"Call of Duty" and "callofduty" meet), ``{w}`` a query word (``tokenize``), ``{g}`` a character
trigram of a compact query padded with one space each side, ``{u}`` a salted user hash
(:func:`shoprank.hashing.hash_id`, the loaders' ``user_hash``; raw ids never reach the store).

Click counters (hashes, field = item id):

=========================  =====================================================================
``c:7d:q:{q}``             clicks of query q, decayed with a 7-day half-life (``share_7d``,
                           ``share_7d_x_log_clicks``; the table ``neighbours``/``words`` share)
``c:2d:q:{q}``             2-day half-life (``share_2d``)
``c:12h:q:{q}``            12-hour half-life (``share_12h``)
``c:all:q:{q}``            plain click counts, integers (``share_all``; their sum: the query's clicks)
``c:7d:pop``               every click, 7-day half-life (``popular_7d``, the popular candidates)
``c:2d:pop`` ``c:12h:pop`` the same, 2-day and 12-hour half-lives (``popular_2d``, ``popular_12h``)
``c:7d:w:{w}``             clicks of queries containing word w, 7-day half-life (``words`` back-off)
=========================  =====================================================================

Decayed counters use *forward decay*: a click at time t (days) adds 2^((t - L)/h) to its field,
where L is the hash's own landmark, stored in the hash under the empty field name ``""`` (no item
id is empty) and set by its first click. Every feature is a ratio *within one hash* (an item's
share of the query's, the word's or all clicks), and ratios do not depend on L, so a reader needs
no clock: the share equals :class:`shoprank.clicks.lookup.QueryLookup`'s, whose weights
0.5^((t_ref - t)/h) differ from these by the constant factor 2^((t_ref - L)/h). Clicks may
arrive in any order. When an increment would pass 2^500, the write script rescales the hash to a
new landmark (every field times 2^-(e), L moved to t), so values never overflow. Values are
doubles written with 17 significant digits (read back exactly), summed in arrival order as the
offline counters sum them.

Queries and their neighbours:

=========================  =====================================================================
``queries``                set of every compact query with a click (``known``)
``g:{g}``                  set of the known compact queries containing trigram g: the postings
                           :meth:`QueryLookup.nearest` walks for queries never seen whole
=========================  =====================================================================

User history (sets of item ids; clicks only, as the offline user features):

=========================  =====================================================================
``u:{u}:q:{q}``            items user u clicked for query q (``user_clicked``)
``u:{u}:any``              items user u clicked for any query (``user_clicked_any``)
=========================  =====================================================================

Other event types (hashes, plain counts; for later features such as click-through rate):
``n:{type}:q:{q}`` (field = item id) and ``n:{type}:pop``, type one of ``impression``,
``add_to_cart``, ``purchase``.

Bookkeeping: ``e:{event_id}`` (string; present once an event with that id was applied: the
idempotency of bulk loads, forever, and of ``Feedback`` event ids, for ``event_id_ttl_s``),
``log`` (a stream of the ``Feedback`` events as sent, hashed user, capped at
``event_log_maxlen``: what the served-results join reads), ``stats`` (hash: ``events``,
``duplicates``, ``type:{type}``) and ``meta`` (hash: ``schema`` = :data:`SCHEMA_VERSION`).

Reading the features of one ranked batch is one pipeline: per query the four ``c:*:q:{q}``
hashes, ``SISMEMBER queries``, the ``c:7d:w:{w}`` of its words, the ``u:{u}:*`` sets of its
user, once per batch the three ``pop`` hashes; the trigram neighbours of unknown queries read
``g:{g}`` and then their tables (a Lua read script does both server-side in the same trip).
"""

from __future__ import annotations

from dataclasses import dataclass

from shoprank.clicks.text import compact_query, query_trigrams, tokenize

SCHEMA_VERSION = "1"
# (name, half-life in days) of the decayed counters, as shoprank.clicks.counts.ClickCounts builds its lookups
DECAYS: tuple[tuple[str, float], ...] = (("7d", 7.0), ("2d", 2.0), ("12h", 0.5))
POPULAR_DECAYS = DECAYS  # popularity under every half-life
WORD_DECAY: tuple[str, float] = ("7d", 7.0)
OTHER_TYPES = ("impression", "add_to_cart", "purchase")
LANDMARK_FIELD = ""


def trigrams(key: str) -> list[str]:
    """Character trigrams of a compact query padded with a space each side (QueryLookup's own), sorted."""
    return sorted(query_trigrams(key))


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "sr:"

    def query_clicks(self, decay: str, query: str) -> str:
        """``c:{decay}:q:{compact query}``; decay one of 7d, 2d, 12h, all."""
        return f"{self.prefix}c:{decay}:q:{compact_query(query)}"

    def query_clicks_prefix(self, decay: str) -> str:
        """``c:{decay}:q:``: the query tables' keys less the query (the read script appends it)."""
        return f"{self.prefix}c:{decay}:q:"

    def popular(self, decay: str) -> str:
        return f"{self.prefix}c:{decay}:pop"

    def word_clicks(self, word: str) -> str:
        return f"{self.prefix}c:{WORD_DECAY[0]}:w:{word}"

    @property
    def queries(self) -> str:
        return f"{self.prefix}queries"

    def gram(self, gram: str) -> str:
        return f"{self.prefix}g:{gram}"

    @property
    def gram_prefix(self) -> str:
        """``g:``: the trigram postings' keys less the trigram (the read script appends it)."""
        return f"{self.prefix}g:"

    def user_query(self, user_hash: str, query: str) -> str:
        return f"{self.prefix}u:{user_hash}:q:{compact_query(query)}"

    def user_any(self, user_hash: str) -> str:
        return f"{self.prefix}u:{user_hash}:any"

    def other(self, event_type: str, query: str | None) -> str:
        """``n:{type}:q:{q}`` for a query, ``n:{type}:pop`` for None."""
        return f"{self.prefix}n:{event_type}:" + (f"q:{compact_query(query)}" if query is not None else "pop")

    def event(self, event_id: str) -> str:
        return f"{self.prefix}e:{event_id}"

    @property
    def log(self) -> str:
        return f"{self.prefix}log"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def meta(self) -> str:
        return f"{self.prefix}meta"


def words(query: str) -> list[str]:
    """The distinct words of ``query`` the word back-off counts (sorted, so writes are deterministic)."""
    return sorted(set(tokenize(query)))
