"""Admission control's decisions (no Ray): idle admits, a known rate bounds the admitted queue by
the wait target and each request's deadline, sheds carry a retry-after hint, and the request budget."""

from __future__ import annotations

import time

from shoprank.serve_app.admission import Admission
from shoprank.serve_app.ingress import request_budget


def _with_rate(a: Admission, per_s: float) -> None:
    """Record completions as if ``per_s`` requests a second had finished over the last second."""
    now = time.monotonic()
    a._done.extend(now - 1.0 + i / per_s for i in range(int(per_s)))


def test_an_idle_graph_admits_up_to_the_minimum() -> None:
    a = Admission(target_wait_s=0.5, min_in_flight=4)
    assert all(a.admit(10.0) is None for _ in range(4))
    assert a.in_flight == 4
    retry = a.admit(10.0)  # no completions yet: the rate is unknown, so only the minimum is admitted
    assert retry is not None and retry > 0 and a.shed == 1


def test_the_admitted_queue_follows_the_rate_and_the_wait_target() -> None:
    a = Admission(target_wait_s=0.5, min_in_flight=1, max_in_flight=1000)
    _with_rate(a, 100.0)  # ~100/s: about 50 fit within a 0.5 s wait
    admitted = sum(a.admit(10.0) is None for _ in range(200))
    assert 40 <= admitted <= 60, admitted
    assert a.shed == 200 - admitted


def test_a_short_deadline_is_shed_rather_than_queued_past_it() -> None:
    a = Admission(target_wait_s=0.5, min_in_flight=1)
    _with_rate(a, 100.0)
    for _ in range(20):
        assert a.admit(10.0) is None  # 0.2 s of queue
    assert a.admit(0.05) is not None  # would wait ~0.21 s: past its 50 ms
    assert a.admit(10.0) is None


def test_release_frees_a_slot_and_counts_a_completion() -> None:
    a = Admission(min_in_flight=1)
    assert a.admit(1.0) is None
    a.release()
    assert a.in_flight == 0 and a.rate() > 0


def test_request_budget_takes_the_callers_timeout_when_shorter() -> None:
    assert request_budget([("shoprank-timeout-ms", "250")], 10.0) == 0.25
    assert request_budget([("shoprank-timeout-ms", "60000")], 10.0) == 10.0
    assert request_budget([("shoprank-timeout-ms", "soon")], 10.0) == 10.0
    assert request_budget([], 3.0) == 3.0
