"""Bulk history: load a historic event log into the store (``shoprank events load``), idempotently.

The file is read by the project's own loaders (:func:`shoprank.data.loaders.load`: the Best Buy
click log, or canonical ``events`` CSV/parquet), so its rows are the ones ``shoprank eval`` counts,
with the same salted ``user_hash``. Each row becomes an :class:`Event` whose id is a hash of its
content plus how many identical rows came before it in the file (:func:`row_event_id`); the write
script counts an event only if ``SET e:{id} NX`` succeeded, and load ids never expire. So loading
the same file twice (or a longer log that starts with an already loaded one) counts nothing twice,
while genuinely repeated rows still count. Rows the loader quarantines, and rows with an unknown
event type or a time outside the store's bounds, are skipped and counted by reason.

One process, pipelined (:func:`write_frame`): ``batch_size`` events per atomic script call,
``pipeline`` calls per round trip, one round in flight while the next is built. Logs too big for one
process: :mod:`shoprank.store.load_ray` (``events load --ray``), the same ids and writes as a Ray
Data job.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import polars as pl

from shoprank.data.loaders import load
from shoprank.errors import DataError
from shoprank.store.config import StoreConfig
from shoprank.store.events import Event, InvalidEvent, parse_event, row_event_id
from shoprank.store.writer import StoreWriter, WriteResult

LoadFormat = Literal["bestbuy-clicks", "canonical"]
FORMATS: tuple[str, ...] = ("bestbuy-clicks", "canonical")


@dataclass
class LoadReport:
    """What a load did; ``to_dict`` is the CLI's JSON."""

    source: str
    fmt: str
    rows_read: int = 0
    events: int = 0  # valid events sent to the store
    accepted: int = 0  # newly counted
    duplicates: int = 0  # already loaded before (not counted again)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.fmt, "rows_read": self.rows_read, "events": self.events,
                "accepted": self.accepted, "duplicates": self.duplicates, "skipped": self.skipped,
                "seconds": round(self.seconds, 3), "events_per_s": round(self.events_per_s, 1)}  # fmt: skip


def read_events(path: str | Path, fmt: str, salt: str | None = None) -> tuple[pl.DataFrame, dict[str, int], int]:
    """The canonical ``events`` frame of ``path``, the loader's quarantine by reason, rows read."""
    if fmt not in FORMATS:
        raise DataError(f"unknown events format {fmt!r} (known: {', '.join(FORMATS)})")
    res = load(path, fmt, salt=salt)
    if "events" not in res.frames:
        raise DataError(f"{path}: no events in it (found: {', '.join(res.frames) or 'nothing'})")
    return res.frames["events"], res.quarantined_by_reason(), res.rows_read


def frame_events(frame: pl.DataFrame, cfg: StoreConfig, skipped: Counter[str]) -> Iterator[Event]:
    """Validated events of a canonical events frame, each with its deterministic row id; bad rows
    are counted in ``skipped`` by ``field: reason``."""
    now_ms = int(time.time() * 1000)
    seen: Counter[tuple] = Counter()
    cols = ("user_hash", "query", "item_id", "event_type", "timestamp", "position")
    ts = frame["timestamp"].cast(pl.Datetime("us")).dt.epoch("us")
    rows = zip(*(frame[c] if c != "timestamp" else ts for c in cols), strict=True)
    for user, query, item, kind, t_us, pos in rows:
        raw = SimpleNamespace(query=query or "", item_id=item or "", type=kind or "", position=pos or 0,
                              event_time_ms=-1 if t_us is None else t_us // 1000)  # fmt: skip
        try:
            e = parse_event(None, raw, cfg, now_ms)
        except InvalidEvent as err:
            skipped[f"{err.field}: {err.reason.split(' (')[0]}"] += 1
            continue
        key = (user, e.query, e.item_id, e.type, int(t_us))
        e = Event(e.query, e.item_id, e.type, int(t_us), user, position=e.position)  # the log's hash and time
        yield replace(e, event_id=row_event_id(e, seen[key]))
        seen[key] += 1


def load_events(
    path: str | Path,
    fmt: LoadFormat,
    store_url: str,
    cfg: StoreConfig | None = None,
    salt: str | None = None,
    batch_size: int = 500,
    pipeline: int = 8,
) -> LoadReport:
    """Load the events of ``path`` (format ``fmt``) into the store at ``store_url``; idempotent."""
    cfg = cfg or StoreConfig()
    t0 = time.perf_counter()
    frame, quarantined, rows_read = read_events(path, fmt, salt)
    report = LoadReport(str(path), fmt, rows_read=rows_read)
    skipped: Counter[str] = Counter({f"quarantined: {k}": v for k, v in quarantined.items()})
    report.events, total = write_frame(frame, store_url, cfg, skipped, batch_size, pipeline)
    report.accepted, report.duplicates = total.accepted, total.duplicates
    report.skipped = dict(skipped)
    report.seconds = time.perf_counter() - t0
    return report


def write_frame(
    frame: pl.DataFrame,
    store_url: str,
    cfg: StoreConfig,
    skipped: Counter[str],
    batch_size: int = 500,
    pipeline: int = 8,
) -> tuple[int, WriteResult]:
    """Write a canonical events frame's valid events (:func:`frame_events`; the rest counted in
    ``skipped``): ``batch_size`` events per atomic script call, ``pipeline`` calls per round trip, one
    round in flight while the next is built. Returns (events sent, what the store counted)."""
    writer = StoreWriter(store_url, cfg)
    total = WriteResult()
    sent = 0
    in_flight: list[Future[WriteResult]] = []
    # one thread sends while this one builds the next round: the server's work and ours overlap
    with ThreadPoolExecutor(max_workers=1) as pool:

        def send(batches: list[list[Event]]) -> None:
            nonlocal total
            in_flight.append(pool.submit(writer.write_batches, batches, 0, False, ""))
            while len(in_flight) > 1:
                total += in_flight.pop(0).result()

        try:
            batch: list[Event] = []
            batches: list[list[Event]] = []
            for e in frame_events(frame, cfg, skipped):
                batch.append(e)
                sent += 1
                if len(batch) == batch_size:
                    batches.append(batch)
                    batch = []
                    if len(batches) == pipeline:
                        send(batches)
                        batches = []
            send([*batches, batch])
            while in_flight:
                total += in_flight.pop(0).result()
        finally:
            writer.close()
    return sent, total
