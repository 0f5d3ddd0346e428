"""Canonical frame schemas: every loader produces exactly these columns and dtypes.

Column names here are the contract between the data layer, training, serving and
campaign scoring; import the constants rather than spelling names again.
"""

from __future__ import annotations

import polars as pl

CATALOGUE: dict[str, pl.DataType] = {
    "item_id": pl.Utf8(),  # the source catalogue's own id, as text
    "title": pl.Utf8(),
    "description": pl.Utf8(),  # may be empty
    "category_path": pl.Utf8(),  # levels joined by " > ", e.g. "Apparel > Footwear > Boots"
    "attributes": pl.Utf8(),  # JSON object as text, "{}" when none
    "price": pl.Float64(),  # null when unknown, never negative
    "rating": pl.Float64(),  # 0..5, null when unknown
    "season": pl.Utf8(),  # "spring" | "summer" | "fall" | "winter" | "all" | null
    "in_stock": pl.Boolean(),
    "popularity": pl.Float64(),  # non-negative count-like signal, 0 when unknown
}

QUERIES: dict[str, pl.DataType] = {
    "query_id": pl.Utf8(),
    "text": pl.Utf8(),
    "intent": pl.Utf8(),  # a category-like class label, null when unknown
}

JUDGEMENTS: dict[str, pl.DataType] = {
    "query_id": pl.Utf8(),
    "query": pl.Utf8(),
    "item_id": pl.Utf8(),
    "label": pl.Float64(),  # graded relevance, higher is more relevant
}

EVENTS: dict[str, pl.DataType] = {
    "user_hash": pl.Utf8(),  # salted hash (shoprank.hashing), never the raw id
    "query": pl.Utf8(),
    "item_id": pl.Utf8(),
    "event_type": pl.Utf8(),  # "impression" | "click" | "purchase"
    "timestamp": pl.Datetime("us"),
    "position": pl.Int32(),  # 1-based rank shown, null when unknown
}

TRANSACTIONS: dict[str, pl.DataType] = {
    "item_id": pl.Utf8(),
    "description": pl.Utf8(),
    "quantity": pl.Int64(),  # negative for returns
    "unit_price": pl.Float64(),
    "timestamp": pl.Datetime("us"),
    "customer_hash": pl.Utf8(),  # null when the source has no customer
    "country": pl.Utf8(),
}

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "catalogue": CATALOGUE,
    "queries": QUERIES,
    "judgements": JUDGEMENTS,
    "events": EVENTS,
    "transactions": TRANSACTIONS,
}

SEASONS: tuple[str, ...] = ("spring", "summer", "fall", "winter", "all")
CATEGORY_SEP = " > "
