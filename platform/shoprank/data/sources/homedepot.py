"""Home Depot product search relevance (Kaggle 2016) -> catalogue, queries, judgements."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.common import LoadResult, catalogue_frame, file_in, make_result, query_ids, read_delimited


def load_homedepot(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Home Depot search relevance CSV (latin-1): id, product_uid, product_title, search_term, relevance."""
    path = file_in(path, ("relevance.csv", "train.csv"))
    notes: list[str] = []
    t = read_delimited(path, encoding=encoding, notes=notes)
    V.require_columns(t.source, t.columns, ["product_uid", "product_title", "search_term", "relevance"])
    raw = V.raw_row(t.columns)
    rules = [
        (V.blank("product_uid"), V.EMPTY_ID),
        (V.blank("product_title"), V.EMPTY_TITLE),
        (V.blank("search_term"), V.EMPTY_TEXT),
        (V.to_float("relevance").is_null(), V.UNPARSEABLE_NUMBER),
    ]
    good, q1 = V.apply_rules(t.df, rules, source=t.source, raw=raw)
    q_parts = [t.quarantine, q1]
    if "id" in t.columns:
        good, q2 = V.quarantine_duplicates(good, "id", source=t.source, raw=raw)
        q_parts.append(q2)
    good = good.with_columns(
        V.text("product_uid").alias("item_id"),
        V.text("product_title").alias("title"),
        V.text("search_term").alias("query"),
        V.to_float("relevance").alias("label"),
    ).with_columns(query_ids(good["search_term"].str.strip_chars()).alias("query_id"))
    desc = V.text("product_description") if "product_description" in t.columns else pl.lit("")
    catalogue = catalogue_frame(
        good.unique("item_id", keep="first", maintain_order=True),
        {"item_id": pl.col("item_id"), "title": pl.col("title"), "description": desc},
    )
    queries = V.conform(
        good.unique("query_id", keep="first", maintain_order=True).select(
            "query_id", pl.col("query").alias("text"), pl.lit(None, dtype=pl.Utf8).alias("intent")
        ),
        "queries",
    )
    judgements = V.conform(good, "judgements")
    return make_result(
        "homedepot",
        t.source,
        t.rows_read,
        {"catalogue": catalogue, "queries": queries, "judgements": judgements},
        q_parts,
        notes,
    )
