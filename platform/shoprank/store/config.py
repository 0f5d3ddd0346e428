"""Settings of the online store and of the ``Feedback`` API (``AppArgs.store`` in the Serve config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Events older than this are "absurd" (a zero or garbled clock); the Best Buy log starts in 2011.
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


class StoreConfig(BaseModel):
    """Bounds and timeouts; the defaults suit a local store and a search service's batches."""

    model_config = ConfigDict(extra="forbid")

    key_prefix: str = "sr:"  # every key starts with it (several apps can share one server)
    max_batch_events: int = Field(1000, ge=1, le=100_000)  # events per Feedback call
    max_query_chars: int = Field(256, ge=1)
    max_id_chars: int = Field(128, ge=1)  # item_id, event_id, request_id
    max_user_chars: int = Field(256, ge=1)
    max_position: int = Field(10_000, ge=1)
    min_event_time_ms: int = MIN_EVENT_TIME_MS
    max_future_s: float = Field(86_400.0, ge=0)  # clock skew allowed ahead of the server's clock
    event_id_ttl_s: int = Field(7 * 86_400, ge=0)  # Feedback idempotency keys live this long (0: forever)
    event_log_maxlen: int = Field(1_000_000, ge=0)  # Feedback events kept in the store's event stream (0: none)
    connect_timeout_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(5.0, gt=0)  # one write (fsync included) must be confirmed within this
