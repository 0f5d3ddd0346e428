"""Admission control at the ingress: admit what the graph can serve in time, shed the rest at once.

Serve's own limit (``max_ongoing_requests``) makes the proxy back off a full replica for seconds,
so past it goodput collapses (issue 22: c16 ~141 req/s, c64 ~41). The ingress instead takes every
request Serve hands it (its ``max_ongoing_requests`` is far above any admitted load) and decides
here: with ``rate`` the requests completed per second over the last ``window_s``, a new request
would wait about ``in_flight / rate``; it is admitted while that stays within ``target_wait_s``
and the request's own deadline, and always while fewer than ``min_in_flight`` are in flight (so an
idle graph, whose rate is unknown, admits). The rest get ``RESOURCE_EXHAUSTED`` at once with a
``retry-after-ms`` hint: the time the admitted queue needs to drain by one slot per shed request.
"""

from __future__ import annotations

import time
from collections import deque


class Admission:
    """Counts requests in flight and completions; :meth:`admit` decides, :meth:`release` records."""

    def __init__(
        self, target_wait_s: float = 0.5, min_in_flight: int = 8, max_in_flight: int = 512, window_s: float = 2.0
    ) -> None:
        self.target_wait_s, self.min_in_flight, self.max_in_flight = target_wait_s, min_in_flight, max_in_flight
        self.window_s = window_s
        self.in_flight = 0
        self.shed = 0
        self._done: deque[float] = deque()

    def rate(self, now: float | None = None) -> float:
        """Requests completed per second over the last ``window_s`` (0.0 when none)."""
        now = time.monotonic() if now is None else now
        while self._done and now - self._done[0] > self.window_s:
            self._done.popleft()
        if not self._done:
            return 0.0
        return len(self._done) / max(min(self.window_s, now - self._done[0]), 0.25)

    def admit(self, budget_s: float) -> float | None:
        """Admit one request with ``budget_s`` left before its deadline: None (admitted: call
        :meth:`release` when it is done), or the suggested retry-after in seconds (shed)."""
        if self.in_flight < self.min_in_flight:
            self.in_flight += 1
            return None
        rate = self.rate()
        wait = (self.in_flight + 1) / rate if rate > 0 else float("inf")
        if self.in_flight < self.max_in_flight and wait <= min(self.target_wait_s, budget_s):
            self.in_flight += 1
            return None
        self.shed += 1
        excess = self.in_flight + 1 - (rate * min(self.target_wait_s, budget_s) if rate > 0 else self.min_in_flight)
        return max(0.05, min(5.0, excess / rate if rate > 0 else self.target_wait_s))

    def release(self) -> None:
        self.in_flight -= 1
        self._done.append(time.monotonic())

    def stats(self) -> dict[str, float]:
        return {"in_flight": self.in_flight, "shed": self.shed, "rate": round(self.rate(), 1)}
