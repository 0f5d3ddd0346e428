"""Myntra fashion styles.csv -> catalogue with seasons."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.common import LoadResult, catalogue_frame, file_in, make_result, read_delimited


def load_fashion(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Myntra fashion styles.csv; rows with unquoted commas in the display name are repaired."""
    path = file_in(path, ("styles.csv",))
    notes: list[str] = []
    t = read_delimited(path, encoding=encoding, notes=notes, join_index=None)
    required = ["id", "productDisplayName", "masterCategory", "subCategory", "articleType"]
    V.require_columns(t.source, t.columns, required)
    if t.quarantine.height and t.columns[-1] == "productDisplayName":
        # Re-read, joining extra fields back into the last column (the display name).
        t = read_delimited(path, encoding=encoding, notes=notes, join_index=len(t.columns) - 1)
    raw = V.raw_row(t.columns)
    has = set(t.columns)
    year = V.to_int("year") if "year" in has else pl.lit(None, dtype=pl.Int64)
    rules = [
        (V.blank("id"), V.EMPTY_ID),
        (V.blank("productDisplayName"), V.EMPTY_TITLE),
        (V.bad_number("year", year) if "year" in has else pl.lit(False), V.UNPARSEABLE_NUMBER),
    ]
    good, q1 = V.apply_rules(t.df, rules, source=t.source, raw=raw)
    good, q2 = V.quarantine_duplicates(good.with_columns(V.text("id").alias("__id")), "__id", source=t.source, raw=raw)
    attrs = {c: V.text_or_null(c) for c in ("gender", "baseColour", "usage") if c in has}
    attrs["year"] = year
    catalogue = catalogue_frame(
        good,
        {
            "item_id": V.text("id"),
            "title": V.text("productDisplayName"),
            "category_path": V.join_path(["masterCategory", "subCategory", "articleType"]),
            "attributes": V.json_object(attrs),
            "season": V.to_season("season") if "season" in has else pl.lit(None, dtype=pl.Utf8),
        },
    )
    return make_result("fashion", t.source, t.rows_read, {"catalogue": catalogue}, [t.quarantine, q1, q2], notes)
