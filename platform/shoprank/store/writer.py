"""Apply a validated batch of events to the store atomically: one Lua script call per batch.

Each event compiles (:func:`event_ops`) to a list of operations on the keys of
:mod:`shoprank.store.keys`; the script (:data:`APPLY_LUA`) checks the whole argument list first
(so it cannot fail half-way on a malformed op), then, per event, claims its idempotency key
(``SET e:{id} 1 NX``; an event without an id always counts) and applies its operations only if the
claim succeeded. A script runs atomically on the server: no reader sees half a batch, and with
``appendonly yes`` + ``appendfsync always`` the server writes the effects to its append-only file
(as one MULTI/EXEC) and fsyncs it before it answers, so a batch that was answered is durable and
one that was not answered is either wholly there or wholly absent after a restart (the server
drops a MULTI left incomplete at the end of the file).

Errors: unreachable, timed out, loading, out of memory, disk/persistence errors ->
:class:`StoreUnavailable` (nothing acknowledged: the caller retries). A write that timed out may
still have been applied: resending it counts it again unless its events carry ``event_id``.

Keys are passed as arguments, not ``KEYS``: the store is one primary (no cluster slots).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from shoprank.clicks.text import compact_query
from shoprank.store.config import StoreConfig
from shoprank.store.errors import StoreUnavailable
from shoprank.store.events import Event
from shoprank.store.keys import DECAYS, POPULAR_DECAYS, SCHEMA_VERSION, WORD_DECAY, Keys, trigrams, words

# ARGV: ttl_s, stats key, meta key, schema, and the batch as one JSON array (one argument: packing
# millions of small arguments costs the client more than the script costs the server). Each event
# is [id key ('' = none), type, t (days), ops], each op [op, key, field, arg]: D decayed increment
# (arg: half-life, days), N integer increment (arg: amount), S set add, K set add that skips the
# next arg ops when the member was already there, X stream append of field (arg: approx. max length).
APPLY_LUA = r"""
local ttl, stats, meta = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local ok, batch = pcall(cjson.decode, ARGV[5])
if not ok or type(batch) ~= 'table' then return redis.error_reply('batch is not a JSON array') end
local valid_op = {D = true, N = true, S = true, K = true, X = true}
for i, ev in ipairs(batch) do  -- check everything first: the script must not fail half-way
  if type(ev) ~= 'table' or type(ev[1]) ~= 'string' or type(ev[2]) ~= 'string' or type(ev[3]) ~= 'number'
      or type(ev[4]) ~= 'table' then
    return redis.error_reply('bad event ' .. i)
  end
  for _, op in ipairs(ev[4]) do
    if type(op) ~= 'table' or not valid_op[op[1]] or type(op[2]) ~= 'string' or type(op[3]) ~= 'string'
        or type(op[4]) ~= 'number' then
      return redis.error_reply('bad op in event ' .. i)
    end
  end
end
local function fmt(x) return string.format('%.17g', x) end
local marks = {}  -- landmarks read in this call (the popularity hashes are hit by every click)
local function dincr(key, field, t, h)
  local l = marks[key] or tonumber(redis.call('HGET', key, ''))
  if not l then
    redis.call('HSET', key, '', fmt(t))
    l = t
  end
  marks[key] = l
  local e = (t - l) / h
  if e > 500 then  -- rescale to a new landmark before values grow past 2^500
    local all = redis.call('HGETALL', key)
    local scale = 2 ^ (-e)
    for j = 1, #all, 2 do
      if all[j] ~= '' then redis.call('HSET', key, all[j], fmt(tonumber(all[j + 1]) * scale)) end
    end
    redis.call('HSET', key, '', fmt(t))
    marks[key] = t
    e = 0
  end
  -- not HINCRBYFLOAT: it prints fixed-point (17 decimals), losing small values; %.17g keeps every double
  redis.call('HSET', key, field, fmt((tonumber(redis.call('HGET', key, field)) or 0) + 2 ^ e))
end
redis.call('HSETNX', meta, 'schema', ARGV[4])
local accepted, dups = 0, 0
for _, ev in ipairs(batch) do
  local id, kind, t = ev[1], ev[2], ev[3]
  local fresh = true
  if id ~= '' then
    if ttl > 0 then fresh = redis.call('SET', id, '1', 'NX', 'EX', ttl)
    else fresh = redis.call('SET', id, '1', 'NX') end
  end
  if not fresh then
    dups = dups + 1
  else
    accepted = accepted + 1
    redis.call('HINCRBY', stats, 'type:' .. kind, 1)
    local skip = 0
    for _, o in ipairs(ev[4]) do
      local op, key, f, arg = o[1], o[2], o[3], o[4]
      if skip > 0 then skip = skip - 1
      elseif op == 'D' then dincr(key, f, t, arg)
      elseif op == 'N' then redis.call('HINCRBY', key, f, arg)
      elseif op == 'S' then redis.call('SADD', key, f)
      elseif op == 'K' then
        if redis.call('SADD', key, f) == 0 then skip = arg end
      else redis.call('XADD', key, 'MAXLEN', '~', arg, '*', 'e', f)
      end
    end
  end
end
if accepted > 0 then redis.call('HINCRBY', stats, 'events', accepted) end
if dups > 0 then redis.call('HINCRBY', stats, 'duplicates', dups) end
return {accepted, dups}
"""

# Server replies that mean "not stored, try again later" rather than a bug.
_RETRYABLE_REPLIES = ("MISCONF", "READONLY", "OOM", "LOADING", "BUSY", "NOREPLICAS", "MASTERDOWN", "TRYAGAIN")


@dataclass
class WriteResult:
    accepted: int = 0  # events applied by this call
    duplicates: int = 0  # events whose id was already applied

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        return self


Op = tuple[str, str, str, float]


def event_ops(e: Event, keys: Keys, log_maxlen: int = 0) -> list[Op]:
    """The store operations of one event (see :mod:`shoprank.store.keys`)."""
    q, item = e.query, e.item_id
    ops: list[Op] = []
    if e.type == "click":
        ops += [("D", keys.query_clicks(name, q), item, h) for name, h in DECAYS]
        ops.append(("N", keys.query_clicks("all", q), item, 1))
        ops += [("D", keys.popular(name), item, h) for name, h in POPULAR_DECAYS]
        ops += [("D", keys.word_clicks(w), item, WORD_DECAY[1]) for w in words(q)]
        key = compact_query(q)
        grams = trigrams(key)
        ops.append(("K", keys.queries, key, len(grams)))
        ops += [("S", keys.gram(g), key, 0) for g in grams]
        if e.user_hash:
            ops += [("S", keys.user_query(e.user_hash, q), item, 0), ("S", keys.user_any(e.user_hash), item, 0)]
    else:
        ops += [("N", keys.other(e.type, q), item, 1), ("N", keys.other(e.type, None), item, 1)]
    if log_maxlen > 0:
        entry = {"request_id": e.request_id, "user_hash": e.user_hash, "query": q, "item_id": item, "type": e.type,
                 "time_ms": e.time_us // 1000, "position": e.position, "event_id": e.event_id}  # fmt: skip
        ops.append(("X", keys.log, json.dumps(entry, separators=(",", ":")), log_maxlen))
    return ops


def script_args(
    events: Sequence[Event], keys: Keys, ttl_s: int = 0, log_maxlen: int = 0, id_prefix: str = "api:"
) -> list[str]:
    """ARGV of :data:`APPLY_LUA` for ``events``; ``event_id`` x becomes key ``e:{id_prefix}{x}``.
    Times travel as JSON numbers (17 significant digits: the script reads back the same double)."""
    batch = [
        [keys.event(id_prefix + e.event_id) if e.event_id else "", e.type, e.time_days, event_ops(e, keys, log_maxlen)]
        for e in events
    ]
    return [str(ttl_s), keys.stats, keys.meta, SCHEMA_VERSION, json.dumps(batch, separators=(",", ":"))]


def unavailable(err: Exception) -> StoreUnavailable | None:
    """The :class:`StoreUnavailable` for a client error that means "not stored, retry", else None."""
    if isinstance(err, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return StoreUnavailable(f"online store unavailable: {err}")
    if isinstance(err, redis.exceptions.ResponseError) and str(err).startswith(_RETRYABLE_REPLIES):
        return StoreUnavailable(f"online store did not store the events: {err}")
    return None


def _result(reply: Any) -> WriteResult:
    return WriteResult(int(reply[0]), int(reply[1]))


def client_options(cfg: StoreConfig, asyncio: bool = False) -> dict[str, Any]:
    """Timeouts, and one immediate retry on a broken connection only (a pooled connection the server
    closed); never on a timeout, where the script may have run: the caller decides (event ids)."""
    retry_cls = redis.asyncio.retry.Retry if asyncio else redis.retry.Retry
    retry = retry_cls(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
    return {"socket_connect_timeout": cfg.connect_timeout_s, "socket_timeout": cfg.timeout_s, "retry": retry}


class StoreWriter:
    """Blocking writer (bulk loads, tests): ``write`` one batch, ``write_batches`` many, pipelined."""

    def __init__(self, url: str, cfg: StoreConfig | None = None) -> None:
        self.cfg = cfg or StoreConfig()
        self.keys = Keys(self.cfg.key_prefix)
        self.client = redis.Redis.from_url(url, **client_options(self.cfg))
        self.script = self.client.register_script(APPLY_LUA)

    def write(self, events: Sequence[Event], ttl_s: int | None = None, log: bool = True) -> WriteResult:
        return self.write_batches([events], ttl_s=ttl_s, log=log)

    def write_batches(
        self, batches: Iterable[Sequence[Event]], ttl_s: int | None = None, log: bool = True, id_prefix: str = "api:"
    ) -> WriteResult:
        """Each batch atomically, all sent in one pipeline (one round trip); raises StoreUnavailable."""
        ttl = self.cfg.event_id_ttl_s if ttl_s is None else ttl_s
        maxlen = self.cfg.event_log_maxlen if log else 0
        total = WriteResult()
        try:
            pipe = self.client.pipeline(transaction=False)
            for b in batches:
                if b:
                    self.script(args=script_args(b, self.keys, ttl, maxlen, id_prefix), client=pipe)
            for reply in pipe.execute():
                total += _result(reply)
        except redis.exceptions.RedisError as err:
            raise unavailable(err) or err from err
        return total

    def close(self) -> None:
        self.client.close()


class AsyncStoreWriter:
    """The ingress's writer (asyncio): one script call per Feedback batch."""

    def __init__(self, url: str, cfg: StoreConfig | None = None) -> None:
        self.cfg = cfg or StoreConfig()
        self.keys = Keys(self.cfg.key_prefix)
        self.client = redis.asyncio.Redis.from_url(url, **client_options(self.cfg, asyncio=True))
        self.script = self.client.register_script(APPLY_LUA)

    async def write(self, events: Sequence[Event]) -> WriteResult:
        args = script_args(events, self.keys, self.cfg.event_id_ttl_s, self.cfg.event_log_maxlen)
        try:
            return _result(await self.script(args=args))
        except redis.exceptions.RedisError as err:
            raise unavailable(err) or err from err

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers (the ingress's readiness probe)."""
        try:
            await self.client.ping()
        except redis.exceptions.RedisError as err:
            raise unavailable(err) or err from err

    async def close(self) -> None:
        await self.client.aclose()
