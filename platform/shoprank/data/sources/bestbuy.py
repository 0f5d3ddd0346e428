"""Best Buy: the search->click log (CSV) -> events, queries; the product XML (or .xml.zip) -> catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import polars as pl

from shoprank.data import validate as V
from shoprank.data.schemas import CATEGORY_SEP
from shoprank.data.sources.common import (
    LoadResult,
    catalogue_frame,
    file_in,
    hash_ids,
    make_result,
    query_ids,
    read_delimited,
)
from shoprank.data.sources.rawtext import ARCHIVE_ERRORS, archive_error, check_file, open_members
from shoprank.errors import DataError


def load_bestbuy_clicks(
    path: Path, salt: str | None = None, encoding: str | None = None, raw_users: bool = False
) -> LoadResult:
    """Best Buy search->click log: user, sku, category, query, click_time, query_time.

    ``raw_users``: the events frame also keeps each row's raw ``user_id`` (for a client that sends
    the log's searches to a server, which hashes them itself: ``shoprank replay``); never stored."""
    path = file_in(path, ("clicks.csv", "train.csv"))
    notes: list[str] = []
    t = read_delimited(path, encoding=encoding, notes=notes)
    V.require_columns(t.source, t.columns, ["user", "sku", "query", "click_time"])
    raw = V.raw_row(t.columns)
    df = t.df.with_columns(V.to_timestamp("click_time").alias("timestamp"))
    rules = [
        (V.blank("sku"), V.EMPTY_ID),
        (V.blank("query"), V.EMPTY_TEXT),
        (pl.col("timestamp").is_null(), V.BAD_TIMESTAMP),
    ]
    good, q1 = V.apply_rules(df, rules, source=t.source, raw=raw)
    good = good.with_columns(V.text_or_null("user").alias("__user"))
    good = good.with_columns(
        hash_ids(good["__user"], salt).alias("user_hash"),
        V.text("query").alias("query"),
        V.text("sku").alias("item_id"),
        pl.lit("click").alias("event_type"),
        pl.lit(None, dtype=pl.Int32).alias("position"),
    )
    good = good.with_columns(query_ids(good["query"]).alias("query_id"))
    events = V.conform(good, "events")
    intent_col = V.text_or_null("category") if "category" in t.columns else pl.lit(None, dtype=pl.Utf8)
    qdf = good.select("query_id", pl.col("query").alias("text"), intent_col.alias("intent"), "__row")
    first = qdf.group_by("query_id").agg(pl.col("text").first(), pl.col("__row").min()).sort("__row")
    mode = (
        qdf.drop_nulls("intent")
        .group_by("query_id", "intent")
        .len()
        .sort(["query_id", "len", "intent"], descending=[False, True, False])
        .group_by("query_id", maintain_order=True)
        .first()
        .select("query_id", "intent")
    )
    queries = V.conform(first.join(mode, on="query_id", how="left", maintain_order="left"), "queries")
    res = make_result(
        "bestbuy-clicks", t.source, t.rows_read, {"events": events, "queries": queries}, [t.quarantine, q1], notes
    )
    if raw_users:  # beside the canonical columns, after their check
        res.frames["events"] = events.with_columns(good["__user"].alias("user_id"))
    return res


def _xml_text(elem: ElementTree.Element, tag: str) -> str:
    child = elem.find(tag)
    return (child.text or "").strip() if child is not None and child.text else ""


def _iter_products(path: Path) -> Any:
    """Yield <product> elements one at a time from an XML file, a gzip of one, or a zip of XML files.

    A damaged archive (found while inflating) and XML that does not parse are one-line DataErrors."""
    with open_members(path, (".xml",)) as streams:
        for name, fh in streams:
            try:
                yield from _iterparse(fh)
            except ElementTree.ParseError as e:
                where = "" if name == str(path) else f"member {name[:80]!r}: "
                raise DataError(f"{path}: unreadable product XML ({where}{e})") from e
            except ARCHIVE_ERRORS as e:
                raise archive_error(path, e) from e


def _iterparse(fh: Any) -> Any:
    for _event, elem in ElementTree.iterparse(fh, events=("end",)):
        if elem.tag == "product":
            yield elem
            elem.clear()


def load_bestbuy_products(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Best Buy product XML (optionally zipped or gzipped), streamed with iterparse."""
    path = file_in(path, ("products.xml.zip", "products.xml", "products.xml.gz"))
    check_file(path)
    tags = (
        "sku",
        "name",
        "shortDescription",
        "longDescription",
        "regularPrice",
        "salePrice",
        "customerReviewAverage",
        "customerReviewCount",
        "salesRankShortTerm",
        "salesRankMediumTerm",
        "salesRankLongTerm",
        "bestSellingRank",
        "onlineAvailability",
        "inStoreAvailability",
        "type",
        "manufacturer",
        "releaseDate",
        "onSale",
    )
    cols: dict[str, list[str]] = {t: [] for t in (*tags, "category_names", "category_ids")}
    n = 0
    for elem in _iter_products(path):
        n += 1
        for tag in tags:
            cols[tag].append(_xml_text(elem, tag))
        cats = elem.findall("./categoryPath/category")
        cols["category_names"].append(CATEGORY_SEP.join(_xml_text(c, "name") for c in cats if _xml_text(c, "name")))
        cols["category_ids"].append(",".join(_xml_text(c, "id") for c in cats if _xml_text(c, "id")))
    if n == 0:
        raise DataError(f"{path}: no <product> entries")
    df = pl.DataFrame(cols, schema={c: pl.Utf8 for c in cols}).with_columns(
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("__row")
    )
    source = str(path)
    raw = pl.format(
        "sku={} name={} regularPrice={} salePrice={}",
        pl.col("sku"),
        pl.col("name"),
        pl.col("regularPrice"),
        pl.col("salePrice"),
    )
    price = pl.coalesce([V.to_float("salePrice"), V.to_float("regularPrice")])
    ranks = [
        V.to_float(c) for c in ("salesRankShortTerm", "salesRankMediumTerm", "salesRankLongTerm", "bestSellingRank")
    ]
    rank = pl.coalesce([pl.when(r > 0).then(r) for r in ranks])
    rules = [
        (V.blank("sku"), V.EMPTY_ID),
        (V.blank("name"), V.EMPTY_TITLE),
        (
            V.bad_number("regularPrice") | V.bad_number("salePrice") | V.bad_number("customerReviewAverage"),
            V.UNPARSEABLE_NUMBER,
        ),
        (price < 0, V.NEGATIVE_PRICE),
    ]
    good, q1 = V.apply_rules(df, rules, source=source, raw=raw)
    good, q2 = V.quarantine_duplicates(good.with_columns(V.text("sku").alias("__sku")), "__sku", source=source, raw=raw)
    desc = pl.when(V.blank("shortDescription")).then(V.text("longDescription")).otherwise(V.text("shortDescription"))
    attrs = V.json_object(
        {
            "type": V.text_or_null("type"),
            "manufacturer": V.text_or_null("manufacturer"),
            "category_ids": pl.col("category_ids").str.split(","),
            "regular_price": V.to_float("regularPrice"),
            "on_sale": V.to_bool("onSale", default=None),
            "release_date": V.text_or_null("releaseDate"),
            "review_count": V.to_int("customerReviewCount"),
        }
    )
    catalogue = catalogue_frame(
        good,
        {
            "item_id": V.text("sku"),
            "title": V.text("name"),
            "description": desc,
            "category_path": pl.col("category_names"),
            "attributes": attrs,
            "price": price,
            "rating": V.to_float("customerReviewAverage"),
            "in_stock": V.to_bool("onlineAvailability", default=None) | V.to_bool("inStoreAvailability", default=None),
            "popularity": (pl.lit(1e6) / rank).fill_null(0.0),
        },
    ).with_columns(pl.col("in_stock").fill_null(True))
    return make_result("bestbuy-products", source, n, {"catalogue": catalogue}, [q1, q2], [])


def write_bestbuy_clicks(events: pl.DataFrame, path: str | Path) -> Path:
    """Write click events (``user_id`` raw, ``query``, ``item_id``, ``timestamp``; as
    ``load_bestbuy_clicks(raw_users=True)`` gives them) as a Best Buy format log that loads back to
    the same rows: the split files of a replay (history for ``shoprank events load``, the test
    period for ``shoprank replay``). Written atomically."""
    from shoprank.files import atomic_path

    when = pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.3f")
    out = events.select(
        pl.col("user_id").fill_null("").alias("user"), pl.col("item_id").alias("sku"),
        pl.lit("").alias("category"), "query", when.alias("click_time"), when.alias("query_time"),
    )  # fmt: skip
    with atomic_path(path) as tmp:
        out.write_csv(tmp)
    return Path(path)
