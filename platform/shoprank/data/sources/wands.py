"""Wayfair WANDS (tab-separated): query.csv -> queries; with product.csv -> catalogue, label.csv -> judgements."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.schemas import CATEGORY_SEP
from shoprank.data.sources.common import LoadResult, catalogue_frame, file_in, make_result, read_delimited


def load_wands(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """WANDS (Wayfair) tab-separated files: query.csv, and product.csv / label.csv when in the same folder."""
    qpath = file_in(path, ("query.csv",))
    notes: list[str] = []
    t = read_delimited(qpath, sep="\t", encoding=encoding, notes=notes)
    V.require_columns(t.source, t.columns, ["query_id", "query"])
    raw = V.raw_row(t.columns, "\t")
    good, q1 = V.apply_rules(
        t.df, [(V.blank("query_id"), V.EMPTY_ID), (V.blank("query"), V.EMPTY_TEXT)], source=t.source, raw=raw
    )
    good, q2 = V.quarantine_duplicates(
        good.with_columns(V.text("query_id").alias("__qid")), "__qid", source=t.source, raw=raw
    )
    intent = V.text_or_null("query_class") if "query_class" in t.columns else pl.lit(None, dtype=pl.Utf8)
    queries = V.conform(
        good.select(V.text("query_id").alias("query_id"), V.text("query").alias("text"), intent.alias("intent")),
        "queries",
    )
    frames = {"queries": queries}
    q_parts = [t.quarantine, q1, q2]
    rows = t.rows_read
    folder = qpath.parent
    if path.is_dir() and (folder / "product.csv").exists():
        p = read_delimited(folder / "product.csv", sep="\t", encoding=encoding, notes=notes)
        V.require_columns(p.source, p.columns, ["product_id", "product_name"])
        praw = V.raw_row(p.columns, "\t")
        opt = {
            c: (V.text(c) if c in p.columns else pl.lit(""))
            for c in ("product_description", "category hierarchy", "product_class")
        }
        rating = V.to_float("average_rating") if "average_rating" in p.columns else pl.lit(None, dtype=pl.Float64)
        reviews = V.to_float("review_count") if "review_count" in p.columns else pl.lit(None, dtype=pl.Float64)
        pg, pq1 = V.apply_rules(
            p.df,
            [(V.blank("product_id"), V.EMPTY_ID), (V.blank("product_name"), V.EMPTY_TITLE)],
            source=p.source,
            raw=praw,
        )
        pg, pq2 = V.quarantine_duplicates(
            pg.with_columns(V.text("product_id").alias("__pid")), "__pid", source=p.source, raw=praw
        )
        frames["catalogue"] = catalogue_frame(
            pg,
            {
                "item_id": V.text("product_id"),
                "title": V.text("product_name"),
                "description": opt["product_description"],
                "category_path": opt["category hierarchy"]
                .str.split("/")
                .list.eval(pl.element().str.strip_chars())
                .list.eval(pl.element().filter(pl.element() != ""))
                .list.join(CATEGORY_SEP),
                "attributes": V.json_object({"product_class": opt["product_class"]}),
                "rating": rating,
                "popularity": reviews.fill_null(0.0),
            },
        )
        q_parts += [p.quarantine, pq1, pq2]
        rows += p.rows_read
    if path.is_dir() and (folder / "label.csv").exists():
        lb = read_delimited(folder / "label.csv", sep="\t", encoding=encoding, notes=notes)
        V.require_columns(lb.source, lb.columns, ["query_id", "product_id", "label"])
        grade = (
            V.text("label")
            .str.to_lowercase()
            .replace_strict({"exact": 2.0, "partial": 1.0, "irrelevant": 0.0}, default=None, return_dtype=pl.Float64)
        )
        label = pl.coalesce([grade, V.to_float("label")])
        lg, lq = V.apply_rules(
            lb.df,
            [(V.blank("query_id") | V.blank("product_id"), V.EMPTY_ID), (label.is_null(), V.UNPARSEABLE_NUMBER)],
            source=lb.source,
            raw=V.raw_row(lb.columns, "\t"),
        )
        lg = lg.select(
            V.text("query_id").alias("query_id"), V.text("product_id").alias("item_id"), label.alias("label")
        )
        lg = lg.join(
            queries.select("query_id", pl.col("text").alias("query")), on="query_id", how="left", maintain_order="left"
        ).with_columns(pl.col("query").fill_null(""))
        frames["judgements"] = V.conform(lg, "judgements")
        q_parts += [lb.quarantine, lq]
        rows += lb.rows_read
    return make_result("wands", t.source, rows, frames, q_parts, notes)
