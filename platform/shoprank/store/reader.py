"""The store as a :class:`~shoprank.clicks.features.ClickFeatureSource`: one round trip per ranked batch.

:meth:`StoreClickSource.lookup` reads everything the click features of a batch of (query, hashed
user) need with ONE pipelined request (``pipeline(transaction=False)``: commands sent together,
replies read together, no MULTI): the three ``c:{7d,2d,12h}:pop`` hashes once, per distinct query
its four ``c:{7d,2d,12h,all}:q:{q}`` hashes, per distinct word the ``c:7d:w:{w}`` hash, per user
the ``u:{u}:q:{q}`` and ``u:{u}:any`` sets, and per distinct query one call of :data:`NEAREST_LUA`.

The nearest-query back-off needs the trigram postings *before* it knows which tables to read, so
it runs server-side: the script returns nothing for a known query; for an unknown one it counts,
over the ``g:{g}`` postings of the query's trigrams, how many trigrams each known query shares,
keeps those whose Jaccard similarity reaches the threshold and ties with or beats the k-th best,
and returns each with its shared count and its ``c:7d:q`` table. The client then picks the
neighbours with :func:`shoprank.clicks.lookup.nearest_queries` (the in-memory lookup's own
function: same similarity, threshold, order and tie-break), so the script only narrows the
candidates and the choice is made by one piece of code. The script is sent by SHA
(``EVALSHA``); a server that does not have it yet (first call, restart) answers NOSCRIPT and the
reader loads it and repeats the batch once (three round trips, once per server start).

The replies become :class:`~shoprank.clicks.features.QueryClicks` exactly as the in-memory counts
build them: the decayed tables hold forward-decayed values (:mod:`shoprank.store.keys`) whose
ratios are the in-memory lookup's, the landmark field dropped. Features then agree with the
in-memory ones to floating-point summation order (a hash's fields come back in the server's
order). The reads of one batch are not a snapshot: a write landing mid-batch may be seen by
some keys and not others (each key's counters are always whole: the write script is atomic).
Errors: any client or server error -> :class:`~shoprank.store.errors.StoreUnavailable` (the
caller answers from the model alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

from shoprank.clicks.features import ClickRequest, QueryClicks
from shoprank.clicks.lookup import MIN_SIMILARITY, NEIGHBOURS, nearest_queries
from shoprank.clicks.text import compact_query, tokenize
from shoprank.store.config import StoreConfig
from shoprank.store.errors import StoreUnavailable
from shoprank.store.keys import DECAYS, LANDMARK_FIELD, WORD_DECAY, Keys, trigrams
from shoprank.store.writer import client_options

# ARGV: queries set, trigram key prefix, 7-day query table key prefix, the compact query, the
# similarity threshold, k, then the query's trigrams. Returns {{known query, shared trigrams,
# HGETALL of its table}, ...}; {} when the query is known. Similarities are compared with a 1e-9
# margin (the client re-checks exactly), numbers go back as integers (Lua numbers would be truncated).
NEAREST_LUA = r"""
local queries, gprefix, tprefix, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local minsim, k = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('SISMEMBER', queries, key) == 1 then return {} end
local n = #ARGV - 6
local shared = {}
for i = 7, #ARGV do
  for _, q in ipairs(redis.call('SMEMBERS', gprefix .. ARGV[i])) do shared[q] = (shared[q] or 0) + 1 end
end
local function ngrams(q)
  local p, seen, c = ' ' .. q .. ' ', {}, 0
  for i = 1, #p - 2 do
    local g = string.sub(p, i, i + 2)
    if not seen[g] then seen[g] = true; c = c + 1 end
  end
  return c
end
local sims = {}
for q, s in pairs(shared) do
  local sim = s / (n + ngrams(q) - s)
  if sim >= minsim - 1e-9 then sims[#sims + 1] = {sim, q, s} end
end
table.sort(sims, function(a, b) return a[1] > b[1] end)
local cut = -1
if #sims >= k then cut = sims[k][1] - 1e-9 end
local out = {}
for _, x in ipairs(sims) do
  if x[1] >= cut then out[#out + 1] = {x[2], x[3], redis.call('HGETALL', tprefix .. x[2])} end
end
return out
"""
POPULAR = tuple(name for name, _ in DECAYS)  # 7d, 2d, 12h
WINDOWS = (*POPULAR, "all")


def _table(reply: dict[str, str]) -> dict[str, float]:
    return {item: float(v) for item, v in reply.items() if item != LANDMARK_FIELD}


def _pairs_table(flat: list[Any]) -> dict[str, float]:
    return _table({flat[i]: flat[i + 1] for i in range(0, len(flat), 2)})


class StoreClickSource:
    """Click features' counts read from the online store (``lookup``: one pipelined round trip)."""

    def __init__(
        self,
        url: str,
        cfg: StoreConfig | None = None,
        timeout_s: float | None = None,
        neighbours: int = NEIGHBOURS,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.cfg = cfg or StoreConfig()
        self.keys = Keys(self.cfg.key_prefix)
        opts = client_options(self.cfg)
        if timeout_s is not None:  # the ranker's per-request budget, not the writes' confirmation time
            opts["socket_timeout"] = timeout_s
            opts["socket_connect_timeout"] = min(timeout_s, self.cfg.connect_timeout_s)
        self.client = redis.Redis.from_url(url, decode_responses=True, **opts)
        self.neighbours, self.min_similarity = neighbours, min_similarity
        self.sha = hashlib.sha1(NEAREST_LUA.encode()).hexdigest()
        self.round_trips = 0  # requests sent to the server (a warm lookup adds exactly 1)

    def lookup(self, requests: Sequence[ClickRequest]) -> list[QueryClicks]:
        """One :class:`QueryClicks` per request; raises StoreUnavailable."""
        if not requests:
            return []
        try:
            try:
                replies, plan = self._read(requests)
            except redis.exceptions.NoScriptError:
                self.round_trips += 1
                self.client.script_load(NEAREST_LUA)
                replies, plan = self._read(requests)
        except redis.exceptions.RedisError as err:
            raise StoreUnavailable(f"online store unavailable for the click features: {err}") from err
        return self._views(requests, replies, plan)

    def _read(self, requests: Sequence[ClickRequest]) -> tuple[list[Any], dict[str, dict[Any, int]]]:
        """Send every read of the batch in one pipeline; ``plan`` maps what was asked to its reply."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        plan: dict[str, dict[Any, int]] = {"pop": {}, "table": {}, "near": {}, "word": {}, "uq": {}, "ua": {}}
        n = 0

        def ask(kind: str, what: Any, command: str, *args: Any) -> None:
            nonlocal n
            if what not in plan[kind]:
                pipe.execute_command(command, *args)
                plan[kind][what] = n
                n += 1

        for name in POPULAR:
            ask("pop", name, "HGETALL", k.popular(name))
        for r in requests:
            key = compact_query(r.query)
            for name in WINDOWS:
                ask("table", (name, key), "HGETALL", k.query_clicks(name, key))
            grams = trigrams(key)
            near_args = (k.queries, k.gram_prefix, k.query_clicks_prefix(WORD_DECAY[0]), key, repr(self.min_similarity),
                         self.neighbours, *grams)  # fmt: skip
            ask("near", key, "EVALSHA", self.sha, 0, *near_args)
            for w in tokenize(r.query):
                ask("word", w, "HGETALL", k.word_clicks(w))
            if r.user_hash:
                ask("uq", (r.user_hash, key), "SMEMBERS", k.user_query(r.user_hash, key))
                ask("ua", r.user_hash, "SMEMBERS", k.user_any(r.user_hash))
        self.round_trips += 1
        return pipe.execute(), plan

    def _views(self, requests: Sequence[ClickRequest], replies: list[Any], plan: dict[str, dict[Any, int]]
               ) -> list[QueryClicks]:  # fmt: skip
        popular = {name: _table(replies[i]) for name, i in plan["pop"].items()}
        tables = {what: _table(replies[i]) for what, i in plan["table"].items()}
        words = {w: _table(replies[i]) or None for w, i in plan["word"].items()}
        out = []
        for r in requests:
            key = compact_query(r.query)
            own = {name: tables[(name, key)] for name in WINDOWS}
            known = bool(own["7d"])
            near: list[tuple[float, dict[str, float]]] = []
            if not known:
                found = {q: (int(s), _pairs_table(t)) for q, s, t in replies[plan["near"][key]]}
                matches = ((q, s, len(trigrams(q))) for q, (s, _) in found.items())
                n_grams = len(trigrams(key))
                near = [(sim, found[q][1]) for sim, q in nearest_queries(n_grams, matches, self.min_similarity,
                                                                         self.neighbours)]  # fmt: skip
            user_q: frozenset[str] = frozenset()
            user_any: frozenset[str] = frozenset()
            if r.user_hash:
                user_q = frozenset(replies[plan["uq"][(r.user_hash, key)]])
                user_any = frozenset(replies[plan["ua"][r.user_hash]])
            out.append(QueryClicks(known, own, [words[w] for w in tokenize(r.query)], near, popular, user_q, user_any))
        return out

    def close(self) -> None:
        self.client.close()
