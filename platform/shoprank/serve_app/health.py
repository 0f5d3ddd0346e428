"""Readiness of the whole search graph, for ``grpc.health.v1`` (``Check`` and ``Watch``).

The graph is ready when every part answers: each downstream deployment (QueryIntent,
CandidateRetriever, MultiTaskRanker: a replica answers only once its ``__init__`` has loaded the
model and the index) and the online store when the app has one. Probes run concurrently, each
within ``timeout_s``; a result is reused for ``ttl_s``, and concurrent checks share one round of
probes, so a probe storm costs the graph at most one round per ``ttl_s``. During a rollout with no
ready replica of a deployment its probe times out: ``NOT_SERVING`` until one is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Probe = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Readiness:
    """The graph's state: ``serving`` when every part answered; ``problems``: part -> why not."""

    serving: bool
    problems: dict[str, str] = field(default_factory=dict)


class GraphHealth:
    """Probes the parts of the graph (``probes``: name -> coroutine factory) and caches the answer."""

    def __init__(self, probes: dict[str, Probe], timeout_s: float = 2.0, ttl_s: float = 1.0) -> None:
        self.probes, self.timeout_s, self.ttl_s = probes, timeout_s, ttl_s
        self._last: Readiness | None = None
        self._at = 0.0
        self._running: asyncio.Task | None = None

    async def check(self) -> Readiness:
        """The graph's readiness, at most ``ttl_s`` old."""
        if self._last is not None and time.monotonic() - self._at < self.ttl_s:
            return self._last
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe_all())
        return await asyncio.shield(self._running)

    async def watch(self, interval_s: float = 1.0) -> AsyncIterator[Readiness]:
        """The current readiness, then each change (checked every ``interval_s``), until cancelled."""
        last = None
        while True:
            now = await self.check()
            if last is None or now.serving != last.serving:
                yield now
            last = now
            await asyncio.sleep(interval_s)

    async def _probe_all(self) -> Readiness:
        names = list(self.probes)
        results = await asyncio.gather(*(self._probe(self.probes[n]) for n in names))
        problems = {n: r for n, r in zip(names, results, strict=True) if r is not None}
        self._last, self._at = Readiness(not problems, problems), time.monotonic()
        return self._last

    async def _probe(self, probe: Probe) -> str | None:
        try:
            await asyncio.wait_for(probe(), timeout=self.timeout_s)
        except TimeoutError:
            return f"no answer within {self.timeout_s:g}s"
        except Exception as e:  # noqa: BLE001 - any failure means not ready; say which
            return f"{type(e).__name__}: {str(e)[:200]}"
        return None
