"""The online store: behavioural counters and per-user history in a Redis-protocol server.

- :mod:`~shoprank.store.keys`: the key schema (what each key holds and why: the click features
  of :mod:`shoprank.clicks.features`, readable in one pipelined round trip per ranked batch);
- :mod:`~shoprank.store.events`: the event record and its all-or-nothing validation;
- :mod:`~shoprank.store.writer`: one validated batch applied atomically (one Lua script call);
- :mod:`~shoprank.store.reader`: the click features' counts for a ranked batch in one pipelined
  round trip (:class:`StoreClickSource`);
- :mod:`~shoprank.store.load`: bulk loading of a historic log, idempotently;
- :mod:`~shoprank.store.server`: a local Valkey/Redis server process with the append-only file on;
- :mod:`~shoprank.store.config`: the settings (batch bounds, time bounds, timeouts).
"""

from shoprank.store.config import StoreConfig
from shoprank.store.errors import StoreUnavailable

__all__ = ["StoreConfig", "StoreUnavailable"]
