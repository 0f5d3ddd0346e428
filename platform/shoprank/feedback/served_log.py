"""The served-results log: every answered Search/Rank and every acknowledged Feedback event, as parquet.

Layout (one directory, two streams, partitioned by the record's UTC date)::

    <dir>/searches/date=YYYY-MM-DD/part-<writer>-<seq>.parquet   one row per answered request
    <dir>/feedback/date=YYYY-MM-DD/part-<writer>-<seq>.parquet   one row per acknowledged event

``searches`` rows (:data:`SEARCH_SCHEMA`): ``request_id``, ``time``, ``kind`` (search/rank), the
salted ``user_hash`` (:mod:`shoprank.hashing`; never the raw id), ``query``, ``month``, ``k``,
``model_version``, ``index_version``, ``degraded`` (+ reason), ``signals`` and ``items``: the shown
list, each ``{item_id, position (1-based), score}``. ``feedback`` rows (:data:`FEEDBACK_SCHEMA`):
the validated event (:class:`shoprank.store.events.Event` fields), logged only after the store
acknowledged its batch; a resend of an event with the same ``event_id`` is logged again (the store
does not say which events of a batch were duplicates), so readers dedupe on ``event_id``.

:class:`ServedLog` never blocks a request: :meth:`ServedLog.log` appends to a bounded in-memory
buffer (``max_buffer`` rows) and returns; a full buffer drops the record, counts it (``dropped``
in :meth:`ServedLog.stats`) and warns at most once per ``warn_every`` drops. A background thread
writes a file per stream and date every ``flush_s`` seconds or ``max_rows`` buffered rows, and on
:meth:`ServedLog.close` (also at interpreter exit). Files are written atomically
(:func:`shoprank.files.atomic_path`: temp file + fsync + rename), so a reader never sees half a
file; ``<writer>`` is unique per process, so replicas on many nodes can share one directory.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.files import atomic_path

log = logging.getLogger("shoprank.feedback")

SEARCHES, FEEDBACK = "searches", "feedback"
STREAMS = (SEARCHES, FEEDBACK)
ITEM = pl.Struct({"item_id": pl.Utf8(), "position": pl.Int32(), "score": pl.Float64()})
SEARCH_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Utf8(),
    "time": pl.Datetime("us"),  # UTC
    "kind": pl.Utf8(),  # "search" | "rank"
    "user_hash": pl.Utf8(),  # salted hash, null for anonymous requests
    "query": pl.Utf8(),
    "month": pl.Int32(),  # the request's context month, 0 = none
    "k": pl.Int32(),
    "model_version": pl.Utf8(),
    "index_version": pl.Utf8(),
    "degraded": pl.Boolean(),
    "degraded_reason": pl.Utf8(),
    "signals": pl.List(pl.Utf8()),
    "items": pl.List(ITEM),
}
FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Utf8(),  # null when the caller sent none
    "time": pl.Datetime("us"),  # the event's time, UTC
    "user_hash": pl.Utf8(),
    "query": pl.Utf8(),
    "item_id": pl.Utf8(),
    "event_type": pl.Utf8(),  # impression | click | add_to_cart | purchase
    "position": pl.Int32(),  # as the caller sent it, null when unknown
    "event_id": pl.Utf8(),
}
SCHEMAS = {SEARCHES: SEARCH_SCHEMA, FEEDBACK: FEEDBACK_SCHEMA}


def partition_dir(root: str | Path, stream: str, time_us: int) -> Path:
    """``<root>/<stream>/date=YYYY-MM-DD`` for a record at ``time_us`` (unix epoch microseconds, UTC)."""
    day = datetime.fromtimestamp(time_us / 1e6, UTC).date().isoformat()
    return Path(root) / stream / f"date={day}"


def _now_us() -> int:
    return time.time_ns() // 1000


def search_record(
    request_id: str, query: Any, result: Any, kind: str = "search", time_us: int | None = None
) -> dict[str, Any]:
    """One ``searches`` row from a validated query (``serving.validation.Query``) and its
    ``serving.stages.SearchResult`` (attributes read, so this package imports nothing of serving)."""
    items = [
        {"item_id": str(it["item_id"]), "position": int(it.get("rank") or i + 1), "score": float(it["score"])}
        for i, it in enumerate(result.items)
    ]
    return {
        "request_id": request_id, "time": _now_us() if time_us is None else time_us, "kind": kind,
        "user_hash": query.user_hash, "query": query.query, "month": int(query.month or 0), "k": int(query.k),
        "model_version": result.model_version, "index_version": result.index_version,
        "degraded": bool(result.degraded), "degraded_reason": result.degraded_reason or "",
        "signals": list(result.signals), "items": items,
    }  # fmt: skip


def feedback_record(event: Any) -> dict[str, Any]:
    """One ``feedback`` row from a validated ``shoprank.store.events.Event``."""
    return {
        "request_id": event.request_id, "time": int(event.time_us), "user_hash": event.user_hash,
        "query": event.query, "item_id": event.item_id, "event_type": event.type, "position": event.position,
        "event_id": event.event_id,
    }  # fmt: skip


def _writer_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"
    return f"{host}_{os.getpid()}_{secrets.token_hex(3)}"


@dataclass
class _Stats:
    logged: int = 0  # rows accepted into the buffer
    dropped: int = 0  # rows refused: buffer full (or the log closed)
    written: int = 0  # rows in files
    files: int = 0
    errors: int = 0  # files that could not be written (their rows are lost, and counted here)
    lost: int = 0
    last_error: str = ""
    by_stream: dict[str, int] = field(default_factory=dict)


class ServedLog:
    """A non-blocking, bounded, background parquet writer for the two streams (see the module doc)."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_buffer: int = 20_000,
        max_rows: int = 5_000,
        flush_s: float = 5.0,
        warn_every: int = 1_000,
        writer_id: str | None = None,
    ) -> None:
        if max_buffer < 1 or max_rows < 1 or flush_s <= 0 or warn_every < 1:
            raise ValueError("max_buffer, max_rows and warn_every must be >= 1 and flush_s > 0")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_buffer, self.max_rows, self.flush_s, self.warn_every = max_buffer, max_rows, flush_s, warn_every
        self.writer_id = writer_id or _writer_id()
        self._buf: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._stats = _Stats()
        self._seq = 0
        self._closed = False
        self._flush_now = False
        self._since_warn = 0
        self._thread = threading.Thread(target=self._run, name=f"served-log-{self.writer_id}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the request path: never blocks ------------------------------------------------------
    def log(self, stream: str, records: Iterable[dict[str, Any]]) -> bool:
        """Buffer ``records`` for ``stream`` (all or none); False (and counted) when the buffer is full."""
        if stream not in SCHEMAS:
            raise ValueError(f"unknown stream {stream!r}; choose from {STREAMS}")
        rows = [(stream, r) for r in records]
        with self._cond:
            if self._closed or len(self._buf) + len(rows) > self.max_buffer:
                self._drop(len(rows))
                return False
            self._buf.extend(rows)
            self._stats.logged += len(rows)
            if len(self._buf) >= self.max_rows:
                self._cond.notify()
        return True

    def log_result(self, request_id: str, query: Any, result: Any, kind: str = "search") -> bool:
        """Log one answered Search/Rank (see :func:`search_record`)."""
        return self.log(SEARCHES, [search_record(request_id, query, result, kind)])

    def log_feedback(self, events: Iterable[Any]) -> bool:
        """Log a batch of events the store acknowledged (see :func:`feedback_record`)."""
        return self.log(FEEDBACK, [feedback_record(e) for e in events])

    def _drop(self, n: int) -> None:  # under the lock: warn on the first drop, then once per warn_every
        self._stats.dropped += n
        self._since_warn += n
        if self._stats.dropped == n or self._since_warn >= self.warn_every:
            self._since_warn = 0
            log.warning("served log %s: buffer full (%d rows) or closed, %d rows dropped so far",
                        self.root, self.max_buffer, self._stats.dropped)  # fmt: skip

    # -- the background writer ---------------------------------------------------------------
    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_s
        while True:
            with self._cond:
                while (not self._closed and not self._flush_now and len(self._buf) < self.max_rows
                       and time.monotonic() < deadline):  # fmt: skip
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
                batch, self._buf, self._flush_now = self._buf, [], False
                closing = self._closed
            if batch:
                try:
                    self._write(batch)
                except Exception as e:  # noqa: BLE001 - e.g. a malformed record: count it, keep logging
                    with self._cond:
                        self._stats.errors += 1
                        self._stats.lost += len(batch)
                        self._stats.last_error = str(e)
                    log.warning("served log: %d rows not written: %s", len(batch), e)
            deadline = time.monotonic() + self.flush_s
            if closing:
                return

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        groups: dict[Path, tuple[str, list[dict[str, Any]]]] = {}
        for stream, rec in batch:
            groups.setdefault(partition_dir(self.root, stream, rec["time"]), (stream, []))[1].append(rec)
        for where, (stream, rows) in sorted(groups.items()):
            self._seq += 1
            path = where / f"part-{self.writer_id}-{self._seq:06d}.parquet"
            try:
                self.write_file(path, frame(stream, rows))
            except Exception as e:  # noqa: BLE001 - a failed file must not stop the log
                with self._cond:
                    self._stats.errors += 1
                    self._stats.lost += len(rows)
                    self._stats.last_error = f"{path}: {e}"
                log.warning("served log: %d rows not written to %s: %s", len(rows), path, e)
                continue
            with self._cond:
                self._stats.written += len(rows)
                self._stats.files += 1
                self._stats.by_stream[stream] = self._stats.by_stream.get(stream, 0) + len(rows)

    def write_file(self, path: Path, df: pl.DataFrame) -> None:
        """Write one part file atomically (temp file in the same folder, fsync, rename)."""
        with atomic_path(path, mode=0o644) as tmp:
            df.write_parquet(tmp)

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Ask the writer to write what is buffered now and wait (up to ``timeout``) until it has."""
        with self._cond:
            target = self._stats.logged
            self._flush_now = True
            self._cond.notify()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                done = self._stats.written + self._stats.lost >= target
            if done:
                return
            time.sleep(0.01)

    def close(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop taking records, write everything buffered, stop the thread; returns :meth:`stats`."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        atexit.unregister(self.close)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counters: logged, dropped, written, files, errors, lost, buffered, by_stream, last_error."""
        with self._cond:
            s = self._stats
            return {
                "logged": s.logged, "dropped": s.dropped, "written": s.written, "files": s.files,
                "errors": s.errors, "lost": s.lost, "buffered": len(self._buf), "by_stream": dict(s.by_stream),
                "last_error": s.last_error,
            }  # fmt: skip


def frame(stream: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of ``stream`` as a frame with exactly its schema (``time`` from epoch microseconds)."""
    schema = SCHEMAS[stream]
    raw = {**schema, "time": pl.Int64()}
    return pl.DataFrame(rows, schema=raw).with_columns(pl.col("time").cast(pl.Datetime("us")))


def open_served_log(root: str | Path | None, **kwargs: Any) -> ServedLog | None:
    """A :class:`ServedLog` writing under ``root``, or None when ``root`` is None (logging off)."""
    return None if root is None else ServedLog(root, **kwargs)
