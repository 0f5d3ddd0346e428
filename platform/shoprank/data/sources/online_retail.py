"""UCI Online Retail (I and II) transactions CSV -> transactions (returns kept as negative quantities)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.common import LoadResult, file_in, hash_ids, make_result, read_delimited

_NULL_CUSTOMER = ["", "na", "nan", "null", "none", "n/a"]


def load_online_retail(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """UCI Online Retail transactions; returns (negative quantities) are kept, NA customers -> null."""
    path = file_in(path, ("transactions.csv", "online_retail.csv", "Online Retail.csv"))
    notes: list[str] = []
    t = read_delimited(path, encoding=encoding, notes=notes)
    # Online Retail II spells some columns differently.
    aliases = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
    rename = {a: c for a, c in aliases.items() if a in t.columns and c not in t.columns}
    if rename:
        t.df = t.df.rename(rename)
        t.columns = [rename.get(c, c) for c in t.columns]
    V.require_columns(t.source, t.columns, ["StockCode", "Quantity", "InvoiceDate", "UnitPrice"])
    raw = V.raw_row(t.columns)
    df = t.df.with_columns(
        V.to_int("Quantity").alias("quantity"),
        V.to_float("UnitPrice").alias("unit_price"),
        V.to_timestamp("InvoiceDate").alias("timestamp"),
    )
    rules = [
        (V.blank("StockCode"), V.EMPTY_ID),
        (pl.col("quantity").is_null() | pl.col("unit_price").is_null(), V.UNPARSEABLE_NUMBER),
        (pl.col("unit_price") < 0, V.NEGATIVE_PRICE),
        (pl.col("timestamp").is_null(), V.BAD_TIMESTAMP),
    ]
    good, q1 = V.apply_rules(df, rules, source=t.source, raw=raw)
    if "CustomerID" in t.columns:
        cust = V.text("CustomerID")
        cust = (
            pl.when(cust.str.to_lowercase().is_in(_NULL_CUSTOMER))
            .then(None)
            .otherwise(cust.str.replace(r"^(\d+)\.0+$", "$1"))
        )
        good = good.with_columns(cust.alias("__cust"))
        good = good.with_columns(hash_ids(good["__cust"], salt).alias("customer_hash"))
    else:
        good = good.with_columns(pl.lit(None, dtype=pl.Utf8).alias("customer_hash"))
    good = good.with_columns(
        V.text("StockCode").alias("item_id"),
        (V.text("Description") if "Description" in t.columns else pl.lit("")).alias("description"),
        (V.text_or_null("Country") if "Country" in t.columns else pl.lit(None, dtype=pl.Utf8)).alias("country"),
    )
    return make_result(
        "online-retail",
        t.source,
        t.rows_read,
        {"transactions": V.conform(good, "transactions")},
        [t.quarantine, q1],
        notes,
    )
