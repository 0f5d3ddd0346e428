"""The event record and its validation: a batch is valid whole, or rejected naming its first bad event.

``parse_events`` reads anything with the ``FeedbackEvent`` fields as attributes (the protobuf
message, or a ``SimpleNamespace``); ``type`` may be the enum number or its name. A user id is
hashed here (:func:`user_hash`) and never kept raw. Rules (bounds from :class:`StoreConfig`):

- ``query``: required, not blank, at most ``max_query_chars`` characters;
- ``item_id``: required, not blank, at most ``max_id_chars``, no control characters;
- ``type``: impression, click, add_to_cart or purchase (``EVENT_TYPE_UNSPECIFIED`` and unknown
  numbers are rejected);
- ``event_time_ms``: 0 means "now" (the server's clock); otherwise not before
  ``min_event_time_ms`` (2000-01-01) and not more than ``max_future_s`` ahead of the server's clock;
- ``position``: 0 (unknown) .. ``max_position``; ``user_id`` at most ``max_user_chars``;
  ``request_id``/``event_id`` at most ``max_id_chars``, no control characters;
- the batch: 1 .. ``max_batch_events`` events.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoprank.hashing import DEFAULT_SALT_ENV, hash_id
from shoprank.store.config import StoreConfig

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")  # proto EventType numbers 1..4
SALT_ENV = DEFAULT_SALT_ENV  # where the salt of user hashes lives (unset: shoprank.hashing's default)


class InvalidEvent(ValueError):
    """One event (by index in its batch) breaks a rule; the message names the event and the field."""

    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, index: int | None, field: str, reason: str) -> None:
        self.index, self.field, self.reason = index, field, reason
        where = f"events[{index}].{field}" if index is not None else field
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Event:
    """A validated event: what the store keeps (the user only as a salted hash)."""

    query: str
    item_id: str
    type: str  # one of EVENT_TYPES
    time_us: int  # unix epoch microseconds
    user_hash: str | None = None
    request_id: str | None = None
    position: int | None = None  # 1-based, None when unknown
    event_id: str | None = None  # idempotency key: applied at most once

    @property
    def time_days(self) -> float:
        """Days since the epoch, computed as ``shoprank.clicks.lookup`` does (same float)."""
        return self.time_us / 86400e6


def user_hash(user_id: str | None, salt: str | None = None) -> str | None:
    """The salted hash the store keys users by: :func:`shoprank.hashing.hash_id` (salt: argument,
    else ``$SHOPRANK_ID_SALT``, else the library default), so loaded logs and live events agree."""
    return hash_id(user_id, salt) if user_id else None


def row_event_id(e: Event, occurrence: int) -> str:
    """A deterministic id for a log row: its content plus how many identical rows came before it
    in the same file, so reloading a file (or a longer file that starts with it) counts nothing twice
    while genuinely repeated rows still count."""
    text = f"{e.user_hash or ''}\x1f{e.query}\x1f{e.item_id}\x1f{e.type}\x1f{e.time_us}\x1f{occurrence}"
    return "row:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _type_name(value: Any) -> str | None:
    if isinstance(value, str):
        name = value.strip().lower()
        return name if name in EVENT_TYPES else None
    if isinstance(value, int) and 1 <= value <= len(EVENT_TYPES):
        return EVENT_TYPES[value - 1]
    return None


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _text(e: Any, name: str) -> str:
    value = getattr(e, name, "") or ""
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def parse_event(i: int | None, e: Any, cfg: StoreConfig, now_ms: int, salt: str | None = None) -> Event:
    """One raw event -> :class:`Event`, or :class:`InvalidEvent` naming ``events[i].field``."""
    try:
        query, item, user = _text(e, "query"), _text(e, "item_id"), _text(e, "user_id")
        request_id, event_id = _text(e, "request_id"), _text(e, "event_id")
    except TypeError as err:
        raise InvalidEvent(i, str(err), "must be text") from None
    if not query.strip():
        raise InvalidEvent(i, "query", "missing (required, not blank)")
    if len(query) > cfg.max_query_chars:
        raise InvalidEvent(i, "query", f"{len(query)} characters, at most {cfg.max_query_chars}")
    if not item.strip():
        raise InvalidEvent(i, "item_id", "missing (required, not blank)")
    for name, value, limit in (("item_id", item, cfg.max_id_chars), ("request_id", request_id, cfg.max_id_chars),
                               ("event_id", event_id, cfg.max_id_chars)):  # fmt: skip
        if len(value) > limit:
            raise InvalidEvent(i, name, f"{len(value)} characters, at most {limit}")
        if _has_control(value):
            raise InvalidEvent(i, name, "contains control characters")
    if len(user) > cfg.max_user_chars:
        raise InvalidEvent(i, "user_id", f"{len(user)} characters, at most {cfg.max_user_chars}")
    raw_type = getattr(e, "type", None)
    kind = _type_name(raw_type)
    if kind is None:
        raise InvalidEvent(i, "type", f"unknown event type {raw_type!r} (known: {', '.join(EVENT_TYPES)})")
    t_ms = getattr(e, "event_time_ms", 0) or 0
    if not isinstance(t_ms, int):
        raise InvalidEvent(i, "event_time_ms", "must be an integer (unix epoch milliseconds)")
    if t_ms == 0:
        t_ms = now_ms
    latest = now_ms + int(cfg.max_future_s * 1000)
    if not cfg.min_event_time_ms <= t_ms <= latest:
        raise InvalidEvent(
            i, "event_time_ms", f"{t_ms} is outside {cfg.min_event_time_ms}..{latest} (2000-01-01 .. now + "
            f"{cfg.max_future_s:g}s; unix epoch milliseconds, 0 = now)",
        )  # fmt: skip
    position = getattr(e, "position", 0) or 0
    if not isinstance(position, int) or not 0 <= position <= cfg.max_position:
        raise InvalidEvent(i, "position", f"{position!r} is outside 0..{cfg.max_position} (0 = unknown)")
    return Event(
        query=query, item_id=item, type=kind, time_us=t_ms * 1000, user_hash=user_hash(user or None, salt),
        request_id=request_id or None, position=position or None, event_id=event_id or None,
    )  # fmt: skip


def parse_events(
    events: Sequence[Any], cfg: StoreConfig, now_ms: int | None = None, salt: str | None = None
) -> list[Event]:
    """A whole batch -> events, or :class:`InvalidEvent` for the first bad one (then nothing is stored)."""
    if not events:
        raise InvalidEvent(None, "events", "empty batch (send 1 or more events)")
    if len(events) > cfg.max_batch_events:
        raise InvalidEvent(None, "events", f"{len(events)} events, at most {cfg.max_batch_events} per call")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return [parse_event(i, e, cfg, now, salt) for i, e in enumerate(events)]
