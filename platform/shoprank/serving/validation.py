"""Request validation: protobuf request -> checked domain query, or one clear message.

Every problem raises :class:`InvalidRequest`, which the gRPC ingress turns into
``INVALID_ARGUMENT`` with the message. "Wrong types" reach the server as protobuf fields
with the wrong wire type (or fields this server does not know); protobuf keeps those as
unknown fields, which are rejected here by field number rather than silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from shoprank.hashing import hash_id
from shoprank.retrieval.index import FilterSpec
from shoprank.serving.config import BLENDABLE_SCORES, FILTER_NAMES, ServingConfig


class InvalidRequest(ValueError):
    """A request that cannot be served as sent; the message names the field and the rule."""


def shown(value: object, limit: int = 40) -> str:
    """``value`` as quoted in an error message: its repr, or the repr of its first ``limit``
    characters and its length, so a message never echoes a long value whole."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass
class Query:
    """A validated Search (``item_ids`` None) or Rank (``item_ids`` set) request."""

    query: str
    k: int
    month: int = 0
    locale: str = ""
    campaign: str = ""
    user_hash: str | None = None
    filters: FilterSpec = field(default_factory=FilterSpec)
    weights: dict[str, float] = field(default_factory=dict)
    item_ids: list[str] | None = None
    custom_weights: bool = False  # the request sent blend_weights (else ``weights`` are the server's)
    deadline: float | None = None  # time.monotonic() after which nobody waits for the answer (the ingress sets it)


def _unknown_fields(msg: Message, where: str) -> None:
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet

        unknown = [f.field_number for f in UnknownFieldSet(msg)]
    except Exception:  # noqa: BLE001 - very old protobuf runtimes: nothing to check
        unknown = []
    if unknown:
        nums = ", ".join(f"#{n}" for n in sorted(set(unknown)))
        raise InvalidRequest(
            f"{where}: unknown field(s) {nums}, or a known field sent with the wrong type; "
            "regenerate the client from protos/shoprank/v1/search.proto"
        )


def reject_unknown_fields(msg: Message, where: str) -> None:
    """:class:`InvalidRequest` when ``msg`` carries fields this server does not know (see module doc)."""
    _unknown_fields(msg, where)


def _parse_bool(name: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "y"):
        return True
    if t in ("false", "0", "no", "n"):
        return False
    raise InvalidRequest(f"filters.{name}: expected true or false, got {shown(text)}")


def _parse_price(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"filters.{name}: expected a number, got {shown(value)}") from None
    if not math.isfinite(v) or v < 0:
        raise InvalidRequest(f"filters.{name}: must be a finite number >= 0, got {shown(value)}")
    return v


def validate_filters(filters: Message) -> FilterSpec:
    """Typed filter fields plus ``by_name`` entries -> FilterSpec; unknown names rejected."""
    _unknown_fields(filters, "filters")
    values: dict[str, Any] = {}
    if filters.category:
        values["category"] = filters.category
    for name in ("price_min", "price_max", "in_stock"):
        if filters.HasField(name):
            values[name] = getattr(filters, name)
    for name, text in sorted(filters.by_name.items()):
        if name not in FILTER_NAMES:
            raise InvalidRequest(f"unknown filter field {shown(name)}; allowed: {', '.join(FILTER_NAMES)}")
        if name in values:
            raise InvalidRequest(f"filter {name!r} given twice (as a field and in by_name)")
        if name == "in_stock":
            values[name] = _parse_bool(name, text)
        elif name == "category":
            values[name] = text
        else:
            values[name] = text
    for name in ("price_min", "price_max"):
        if name in values:
            values[name] = _parse_price(name, values[name])
    if "category" in values:
        cat = str(values["category"]).strip()
        if len(cat) > 512:
            raise InvalidRequest("filters.category: longer than 512 characters")
        values["category"] = cat or None
    if values.get("price_min") is not None and values.get("price_max") is not None:
        if values["price_min"] > values["price_max"]:
            raise InvalidRequest(
                f"filters: price_min ({values['price_min']}) is greater than price_max ({values['price_max']})"
            )
    return FilterSpec(
        category=values.get("category"),
        price_min=values.get("price_min"),
        price_max=values.get("price_max"),
        in_stock=values.get("in_stock"),
    )


def validate_weights(weights: dict[str, float], cfg: ServingConfig) -> dict[str, float]:
    """Per-request blend weights: known score names, finite, 0..max, at least one > 0."""
    if not weights:
        return dict(cfg.blend_weights)
    out: dict[str, float] = {}
    for name, w in sorted(weights.items()):
        if name not in BLENDABLE_SCORES:
            raise InvalidRequest(f"blend_weights: unknown task {shown(name)}; allowed: {', '.join(BLENDABLE_SCORES)}")
        w = float(w)
        if not math.isfinite(w):
            raise InvalidRequest(f"blend_weights[{name!r}]: must be finite, got {w}")
        if w < 0:
            raise InvalidRequest(f"blend_weights[{name!r}]: must be >= 0, got {w:g}")
        if w > cfg.max_blend_weight:
            raise InvalidRequest(f"blend_weights[{name!r}]: {w:g} is above the maximum {cfg.max_blend_weight:g}")
        out[name] = w
    if not any(w > 0 for w in out.values()):
        raise InvalidRequest("blend_weights: at least one weight must be > 0")
    return out


def _common(req: Message, cfg: ServingConfig, kind: str) -> dict[str, Any]:
    _unknown_fields(req, kind)
    if req.HasField("context"):
        _unknown_fields(req.context, "context")
    query = req.query.strip()
    if not query:
        raise InvalidRequest("query: must not be empty")
    if len(req.query) > cfg.max_query_chars:
        raise InvalidRequest(f"query: {len(req.query)} characters, the maximum is {cfg.max_query_chars}")
    month = int(req.context.month)
    if not 0 <= month <= 12:
        raise InvalidRequest(f"context.month: must be 1..12 (or 0 for unknown), got {month}")
    if len(req.context.locale) > 35 or len(req.context.campaign) > 128:
        raise InvalidRequest("context: locale (35) or campaign (128 characters) too long")
    if len(req.user_id) > cfg.max_id_chars:
        raise InvalidRequest(f"user_id: {len(req.user_id)} characters, the maximum is {cfg.max_id_chars}")
    return {
        "query": query,
        "month": month,
        "locale": req.context.locale,
        "campaign": req.context.campaign,
        "user_hash": hash_id(req.user_id) if req.user_id else None,
        "weights": validate_weights(dict(req.blend_weights), cfg),
        "custom_weights": bool(req.blend_weights),
    }


def validate_search(req: Message, cfg: ServingConfig) -> Query:
    """A SearchRequest -> Query, or InvalidRequest naming the first problem."""
    common = _common(req, cfg, "SearchRequest")
    if not 1 <= req.k <= cfg.max_k:
        raise InvalidRequest(f"k: must be 1..{cfg.max_k}, got {req.k}")
    filters = validate_filters(req.filters) if req.HasField("filters") else FilterSpec()
    return Query(k=int(req.k), filters=filters, **common)


def validate_rank(req: Message, cfg: ServingConfig) -> Query:
    """A RankRequest -> Query with ``item_ids``, or InvalidRequest."""
    common = _common(req, cfg, "RankRequest")
    ids = list(req.item_ids)
    if not ids:
        raise InvalidRequest("item_ids: at least one candidate id is required")
    if len(ids) > cfg.max_rank_items:
        raise InvalidRequest(f"item_ids: {len(ids)} ids, the maximum is {cfg.max_rank_items}")
    long_ids = [i for i, x in enumerate(ids) if len(x) > cfg.max_id_chars or not x.strip()]
    if long_ids:
        j = long_ids[0]
        raise InvalidRequest(
            f"item_ids[{j}]: {len(ids[j])} characters; ids must be 1..{cfg.max_id_chars} characters, not blank"
        )
    if len(set(ids)) != len(ids):
        raise InvalidRequest("item_ids: contains duplicates")
    if not 0 <= req.k <= cfg.max_k:
        raise InvalidRequest(f"k: must be 0 (all) or 1..{cfg.max_k}, got {req.k}")
    return Query(k=int(req.k) or len(ids), item_ids=ids, **common)
