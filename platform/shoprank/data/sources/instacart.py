"""Instacart products (headerless or with header) plus aisles.csv / departments.csv -> catalogue."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.common import LoadResult, catalogue_frame, file_in, make_result, read_delimited

_INSTACART_COLUMNS = ["product_id", "product_name", "aisle_id", "department_id"]


def _lookup(path: Path, key: str, value: str, encoding: str | None, notes: list[str]) -> pl.DataFrame:
    t = read_delimited(path, encoding=encoding, notes=notes)
    V.require_columns(t.source, t.columns, [key, value])
    return t.df.select(V.text(key).alias(key), V.text(value).alias(value)).unique(key, keep="first")


def load_instacart(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Instacart products (headerless or with header) plus aisles.csv / departments.csv lookups."""
    path = file_in(path, ("products_noheader.csv", "products.csv"))
    notes: list[str] = []
    t = read_delimited(path, header=None, names=_INSTACART_COLUMNS, encoding=encoding, notes=notes, join_index=1)
    V.require_columns(t.source, t.columns, _INSTACART_COLUMNS)
    aisles = _lookup(path.parent / "aisles.csv", "aisle_id", "aisle", encoding, notes)
    departments = _lookup(path.parent / "departments.csv", "department_id", "department", encoding, notes)
    raw = V.raw_row(t.columns)
    rules = [
        (V.blank("product_id"), V.EMPTY_ID),
        (V.blank("product_name"), V.EMPTY_TITLE),
        (V.to_int("aisle_id").is_null() | V.to_int("department_id").is_null(), V.UNPARSEABLE_NUMBER),
    ]
    good, q1 = V.apply_rules(t.df, rules, source=t.source, raw=raw)
    good, q2 = V.quarantine_duplicates(
        good.with_columns(V.text("product_id").alias("__id")), "__id", source=t.source, raw=raw
    )
    good = (
        good.with_columns(
            V.to_int("aisle_id").cast(pl.Utf8).alias("aisle_id"),
            V.to_int("department_id").cast(pl.Utf8).alias("department_id"),
        )
        .join(aisles, on="aisle_id", how="left", maintain_order="left")
        .join(departments, on="department_id", how="left", maintain_order="left")
    )
    unknown = good.filter(pl.col("aisle").is_null() | pl.col("department").is_null()).height
    if unknown:
        notes.append(f"{path.name}: {unknown} products reference an aisle or department missing from the lookups")
    catalogue = catalogue_frame(
        good,
        {
            "item_id": V.text("product_id"),
            "title": V.text("product_name"),
            "category_path": V.join_path(["department", "aisle"]),
            "attributes": V.json_object(
                {"aisle_id": pl.col("aisle_id").cast(pl.Int64), "department_id": pl.col("department_id").cast(pl.Int64)}
            ),
        },
    )
    return make_result("instacart", t.source, t.rows_read, {"catalogue": catalogue}, [t.quarantine, q1, q2], notes)
