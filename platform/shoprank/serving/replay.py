"""Replay a click log against a running server: each click's search over gRPC, then the click as Feedback.

What a team runs before switching traffic to a deployment (``shoprank replay``): rows of a Best
Buy format log, in time order, each sent as a ``Search`` (its query, its user, the month of its
time, ``k``), and then each click as a ``Feedback`` event (its request id, the position the item
was shown at, the click time), so the server's counters move as a live service's would. Clicks
with the same time are searched first and fed back together: no search sees a click of its own
moment, as ``shoprank eval --clicks`` ranks every click from the clicks strictly before it.

Each Feedback event carries an ``event_id`` from the row's content and how many identical rows
precede it, so a batch resent after ``UNAVAILABLE`` is not counted twice.

The score is eval's: MAP@5 and recall@k with the clicked item the one relevant item
(:mod:`shoprank.eval.metrics`); a failed search counts as an empty list.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.errors import DataError
from shoprank.eval import metrics as M
from shoprank.serving.client import SearchClient, SearchError

FEEDBACK_BATCH = 100  # events per Feedback call (under the server's max_batch_events)


@dataclass(frozen=True)
class Click:
    """One row of the log: who searched what, when, and the item they clicked."""

    user_id: str | None
    query: str
    item_id: str
    time_ms: int  # unix epoch ms (the log's naive times read as UTC)
    month: int  # 1..12, the search's context month


@dataclass
class ReplayReport:
    """What :func:`replay` measured; :meth:`to_dict` is the JSON line ``shoprank replay`` prints."""

    k: int
    lists: list[list[str]] = field(default_factory=list)  # served ids per click, in replay order
    clicked: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # successful Search calls
    errors: Counter[str] = field(default_factory=Counter)  # Search status codes; Feedback ones as feedback:CODE
    degraded_at: list[bool] = field(default_factory=list)  # per click: the response was degraded (model alone)
    signals: Counter[str] = field(default_factory=Counter)
    feedback_accepted: int = 0
    feedback_duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        rel = [[i] for i in self.clicked]
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.asarray([np.nan])
        return {
            f"map@{min(5, self.k)}": M.map_at_k(rel, self.lists, min(5, self.k)),
            f"recall@{self.k}": M.mean_recall_at_k(rel, self.lists, self.k),
            "requests": len(self.lists),
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p99": float(np.nanpercentile(lat, 99))},
            "degraded": sum(self.degraded_at),
            "signals": dict(sorted(self.signals.items())),
            "feedback": {"accepted": self.feedback_accepted, "duplicates": self.feedback_duplicates},
        }


def read_clicks(path: str | Path) -> tuple[list[Click], dict[str, int]]:
    """A Best Buy format click log as :class:`Click` rows in time order (stable), and the loader's
    counts (``rows``, ``kept``, ``quarantined``: malformed rows are counted, the rest kept)."""
    from shoprank.data.sources.bestbuy import load_bestbuy_clicks

    res = load_bestbuy_clicks(Path(path), raw_users=True)
    ev = res.frames["events"].filter(pl.col("event_type") == "click").sort("timestamp", maintain_order=True)
    if ev.is_empty():
        raise DataError(f"{path}: no clicks to replay")
    ms = ev["timestamp"].cast(pl.Datetime("us")).dt.epoch("ms").to_list()
    months = ev["timestamp"].dt.month().to_list()
    rows = [
        Click(u or None, q, str(i), int(t), int(m))
        for u, q, i, t, m in zip(ev["user_id"], ev["query"], ev["item_id"], ms, months, strict=True)
    ]
    counts = {"rows": res.rows_read, "kept": len(rows), "quarantined": res.quarantine.height}
    return rows, counts


def _moments(rows: list[Click]) -> Iterator[list[Click]]:
    """Consecutive rows with the same time."""
    group: list[Click] = []
    for r in rows:
        if group and r.time_ms != group[-1].time_ms:
            yield group
            group = []
        group.append(r)
    if group:
        yield group


def _event_ids(rows: list[Click]) -> list[str]:
    """Per row: a hash of its content and how many identical rows came before it (resends count once)."""
    seen: Counter[tuple[Any, ...]] = Counter()
    out = []
    for r in rows:
        key = (r.user_id or "", r.query, r.item_id, r.time_ms)
        out.append("replay:" + hashlib.sha256("\x1f".join(map(str, (*key, seen[key]))).encode()).hexdigest()[:32])
        seen[key] += 1
    return out


def replay(
    client: SearchClient,
    rows: list[Click],
    k: int = 5,
    feedback: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Search every row in time order and feed its click back; see the module docstring."""
    report = ReplayReport(k=k)
    ids = iter(_event_ids(rows))
    pending: list[dict[str, Any]] = []
    done = 0
    for moment in _moments(rows):
        for r in moment:
            t0 = time.perf_counter()
            try:
                resp = client.search(r.query, k, user_id=r.user_id, month=r.month)
            except SearchError as e:
                report.errors[e.code] += 1
                shown, request_id, degraded = [], "", False
            else:
                report.latency_ms.append((time.perf_counter() - t0) * 1e3)
                shown, request_id = [it.item_id for it in resp.items], resp.request_id
                degraded = resp.degraded
                report.signals.update(resp.signals)
            report.lists.append(shown)
            report.degraded_at.append(degraded)
            report.clicked.append(r.item_id)
            position = shown.index(r.item_id) + 1 if r.item_id in shown else 0
            pending.append(
                {"request_id": request_id, "user_id": r.user_id or "", "query": r.query, "item_id": r.item_id,
                 "type": "click", "event_time_ms": r.time_ms, "position": position, "event_id": next(ids)}
            )  # fmt: skip
        if feedback:
            _send(client, pending, report)
        pending = []
        done += len(moment)
        if progress is not None:
            progress(done, len(rows))
    return report


def _send(client: SearchClient, events: list[dict[str, Any]], report: ReplayReport) -> None:
    for start in range(0, len(events), FEEDBACK_BATCH):
        try:
            resp = client.feedback(events[start : start + FEEDBACK_BATCH])
        except SearchError as e:
            report.errors[f"feedback:{e.code}"] += 1
            continue
        report.feedback_accepted += resp.accepted
        report.feedback_duplicates += resp.duplicates
