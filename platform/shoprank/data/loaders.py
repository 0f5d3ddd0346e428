"""Loaders for real catalogue, query, judgement and log formats, producing canonical frames.

``load(path, fmt)`` returns a :class:`LoadResult`: canonical Polars frames (exactly the
columns and dtypes of :mod:`shoprank.data.schemas`), a quarantine frame of bad rows with their
reasons, and the number of rows read. Every field is read as text (pyarrow's CSV parser, which
reports rows with the wrong number of fields), then cast with vectorised Polars expressions;
rows whose casts fail are quarantined, never silently dropped.

Formats (``FORMATS``): homedepot, bestbuy-clicks, bestbuy-products, wands, fashion,
online-retail, instacart, canonical.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from shoprank.data import validate as V
from shoprank.data.schemas import CATEGORY_SEP, SCHEMAS
from shoprank.errors import DataError
from shoprank.hashing import hash_id, id_salt


@dataclass
class LoadResult:
    """What a loader produced: canonical frames, quarantined rows and counts."""

    frames: dict[str, pl.DataFrame]
    quarantine: pl.DataFrame
    rows_read: int
    source: str
    fmt: str = ""
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, kind: str) -> pl.DataFrame:
        return self.frames[kind]

    def quarantined_by_reason(self) -> dict[str, int]:
        if self.quarantine.height == 0:
            return {}
        counts = self.quarantine.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.fmt,
            "rows_read": self.rows_read,
            "kept": {k: v.height for k, v in self.frames.items()},
            "quarantined": self.quarantine.height,
            "quarantined_by_reason": self.quarantined_by_reason(),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- ids


def normalize_query(text: str) -> str:
    return " ".join(text.lower().split())


def stable_query_id(text: str) -> str:
    """A stable id for a query text (case and whitespace insensitive); not salted: queries are not people."""
    return hashlib.sha256(("q:" + normalize_query(text)).encode()).hexdigest()[:16]


def _map_unique(s: pl.Series, fn: Callable[[str], str | None]) -> pl.Series:
    """Apply a Python function once per distinct value (hashing is per distinct id, not per row)."""
    uniq = s.unique().drop_nulls()
    table = pl.DataFrame({"k": uniq, "v": pl.Series([fn(x) for x in uniq.to_list()], dtype=pl.Utf8)})
    return s.to_frame("k").join(table, on="k", how="left", maintain_order="left")["v"]


def query_ids(s: pl.Series) -> pl.Series:
    return _map_unique(s.cast(pl.Utf8), stable_query_id)


def hash_ids(s: pl.Series, salt: str | None) -> pl.Series:
    """Salted hashes of user/customer ids (null stays null); see shoprank.hashing."""
    salt = id_salt(salt)
    return _map_unique(s.cast(pl.Utf8), lambda x: hash_id(x, salt))


# ----------------------------------------------------------------------------- reading text


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from e
    if not data.strip():
        raise DataError(f"{path}: empty file")
    return data


def _decode(path: Path, data: bytes, encoding: str | None, notes: list[str]) -> bytes:
    """UTF-8 bytes for the parser. Auto: UTF-8 when valid, else latin-1 (every byte decodes)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:65536]:
        raise DataError(f"{path}: not a text file (NUL bytes); wrong format or compressed?")
    enc = (encoding or "auto").lower().replace("_", "-")
    if enc in ("utf-8", "utf8"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 at byte {e.start}; pass encoding='latin-1'") from e
        return data
    if enc == "auto":
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            enc = "latin-1"
            notes.append(f"{path.name}: not UTF-8, decoded as latin-1")
    try:
        return data.decode(enc).encode("utf-8")
    except (LookupError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot decode as {enc} ({e})") from e


def _first_record(data: bytes, sep: str) -> list[str]:
    end = data.find(b"\n")
    line = (data if end < 0 else data[:end]).decode("utf-8").rstrip("\r")
    return next(csv.reader([line], delimiter=sep), [])


@dataclass
class _Table:
    df: pl.DataFrame  # all Utf8 columns plus "__row" (1-based data row)
    columns: list[str]
    quarantine: pl.DataFrame
    rows_read: int
    source: str


def read_delimited(
    path: Path,
    *,
    sep: str = ",",
    header: bool | None = True,
    names: list[str] | None = None,
    join_index: int | None = None,
    encoding: str | None = None,
    notes: list[str] | None = None,
) -> _Table:
    """Read a delimited text file with every field as text.

    ``header=None`` detects a header: the first record is a header when it equals ``names``.
    Rows with the wrong number of fields are quarantined ("wrong field count"), except that
    with ``join_index`` a row with *extra* fields (unquoted separators inside one text field)
    is repaired by joining the surplus fields back into field ``join_index``.
    """
    notes = notes if notes is not None else []
    source = str(path)
    data = _decode(path, _read_bytes(path), encoding, notes)
    first = _first_record(data, sep)
    if header is None:
        header = names is not None and [f.strip().lower() for f in first] == [n.lower() for n in names]
    if header:
        columns = [c.strip() for c in first]
        if not any(columns):
            raise DataError(f"{path}: empty header line")
    else:
        if names is None:
            raise DataError(f"{path}: no header and no column names given")
        columns = list(names)
    n_expected = len(columns)
    # Unique internal names guard against duplicate or blank header names.
    internal = [f"c{i}" for i in range(n_expected)]

    def parse(use_threads: bool) -> tuple[pa.Table, list[tuple[int | None, int, str]]]:
        bad: list[tuple[int | None, int, str]] = []

        def handler(row: Any) -> str:
            bad.append((row.number, row.actual_columns, row.text))
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                use_threads=use_threads, column_names=internal, skip_rows=1 if header else 0, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in internal},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
        return table, bad

    try:
        table, bad = parse(True)
        if bad:  # re-read single-threaded: only then does pyarrow report row numbers
            table, bad = parse(False)
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: unreadable as delimited text ({str(e).splitlines()[0]})") from e

    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    n_bad = len(bad)
    total = df.height + n_bad
    bad_rows = [(num - (1 if header else 0)) if num is not None else 0 for num, _, _ in bad]
    if n_bad:
        kept_rows = np.setdiff1d(np.arange(1, total + 1), np.array(bad_rows))[: df.height]
    else:
        kept_rows = np.arange(1, total + 1)
    df = df.with_columns(pl.Series("__row", kept_rows, dtype=pl.Int64))

    repaired: list[list[str]] = []
    repaired_rows: list[int] = []
    q_rows: list[dict[str, Any]] = []
    for (_, actual, text), row in zip(bad, bad_rows, strict=True):
        if join_index is not None and actual > n_expected:
            fields = next(csv.reader([text], delimiter=sep), [])
            if len(fields) > n_expected:
                extra = len(fields) - n_expected
                joined = sep.join(fields[join_index : join_index + extra + 1])
                repaired.append(fields[:join_index] + [joined] + fields[join_index + extra + 1 :])
                repaired_rows.append(row)
                continue
        q_rows.append({"source": source, "row": row, "reason": V.WRONG_FIELD_COUNT, "raw": text})
    if repaired:
        fixed = pl.DataFrame(
            {**{c: [r[i] for r in repaired] for i, c in enumerate(internal)}, "__row": repaired_rows},
            schema={**{c: pl.Utf8 for c in internal}, "__row": pl.Int64},
        )
        df = pl.concat([df, fixed]).sort("__row")
        notes.append(f"{path.name}: {len(repaired)} rows with unquoted separators repaired (fields joined)")
    rename = {}
    seen: set[str] = set()
    for i, c in zip(range(n_expected), columns, strict=True):
        name = c if c and c not in seen and c != "__row" else f"column_{i + 1}"
        seen.add(name)
        rename[internal[i]] = name
    df = df.rename(rename)
    if total == 0:
        raise DataError(f"{path}: no data rows")
    q = pl.DataFrame(q_rows, schema=V.QUARANTINE_SCHEMA) if q_rows else V.empty_quarantine()
    return _Table(df=df, columns=[rename[c] for c in internal], quarantine=q, rows_read=total, source=source)


# ----------------------------------------------------------------------------- helpers


def _catalogue_defaults() -> dict[str, pl.Expr]:
    return {
        "description": pl.lit(""),
        "category_path": pl.lit(""),
        "attributes": pl.lit("{}"),
        "price": pl.lit(None, dtype=pl.Float64),
        "rating": pl.lit(None, dtype=pl.Float64),
        "season": pl.lit(None, dtype=pl.Utf8),
        "in_stock": pl.lit(True),
        "popularity": pl.lit(0.0),
    }


def _catalogue(df: pl.DataFrame, exprs: dict[str, pl.Expr]) -> pl.DataFrame:
    cols = {**_catalogue_defaults(), **exprs}
    return V.conform(df.select([e.alias(k) for k, e in cols.items()]), "catalogue")


def _result(
    fmt: str, t_source: str, rows_read: int, frames: dict[str, pl.DataFrame], q: list[pl.DataFrame], notes: list[str]
) -> LoadResult:
    for kind, frame in frames.items():
        V.check_schema(frame, kind)
    return LoadResult(
        frames=frames, quarantine=V.concat_quarantine(q), rows_read=rows_read, source=t_source, fmt=fmt, notes=notes
    )


def _file_in(path: Path, candidates: tuple[str, ...]) -> Path:
    """``path`` itself, or the first of ``candidates`` inside it when it is a folder."""
    if path.is_dir():
        for name in candidates:
            if (path / name).exists():
                return path / name
        raise DataError(f"{path}: no {' or '.join(candidates)} in this folder")
    return path


# ----------------------------------------------------------------------------- formats


def load_homedepot(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Home Depot search relevance CSV (latin-1): id, product_uid, product_title, search_term, relevance."""
    path = _file_in(path, ("relevance.csv", "train.csv"))
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
    catalogue = _catalogue(
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
    return _result(
        "homedepot",
        t.source,
        t.rows_read,
        {"catalogue": catalogue, "queries": queries, "judgements": judgements},
        q_parts,
        notes,
    )


def load_bestbuy_clicks(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Best Buy search->click log: user, sku, category, query, click_time, query_time."""
    path = _file_in(path, ("clicks.csv", "train.csv"))
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
    return _result(
        "bestbuy-clicks", t.source, t.rows_read, {"events": events, "queries": queries}, [t.quarantine, q1], notes
    )


def _xml_text(elem: ElementTree.Element, tag: str) -> str:
    child = elem.find(tag)
    return (child.text or "").strip() if child is not None and child.text else ""


def _iter_products(path: Path) -> Any:
    """Yield <product> elements one at a time from an XML file or a zip of XML files."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".xml")]
                if not members:
                    raise DataError(f"{path}: zip archive contains no .xml file")
                for name in members:
                    with zf.open(name) as fh:
                        yield from _iterparse(fh)
        else:
            with open(path, "rb") as fh:
                yield from _iterparse(fh)
    except (ElementTree.ParseError, zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: unreadable product XML ({e})") from e


def _iterparse(fh: Any) -> Any:
    for _event, elem in ElementTree.iterparse(fh, events=("end",)):
        if elem.tag == "product":
            yield elem
            elem.clear()


def load_bestbuy_products(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Best Buy product XML (optionally zipped), streamed with iterparse."""
    path = _file_in(path, ("products.xml.zip", "products.xml"))
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
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
    catalogue = _catalogue(
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
    return _result("bestbuy-products", source, n, {"catalogue": catalogue}, [q1, q2], [])


def load_wands(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """WANDS (Wayfair) tab-separated files: query.csv, and product.csv / label.csv when in the same folder."""
    qpath = _file_in(path, ("query.csv",))
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
        frames["catalogue"] = _catalogue(
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
    return _result("wands", t.source, rows, frames, q_parts, notes)


def load_fashion(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Myntra fashion styles.csv; rows with unquoted commas in the display name are repaired."""
    path = _file_in(path, ("styles.csv",))
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
    catalogue = _catalogue(
        good,
        {
            "item_id": V.text("id"),
            "title": V.text("productDisplayName"),
            "category_path": V.join_path(["masterCategory", "subCategory", "articleType"]),
            "attributes": V.json_object(attrs),
            "season": V.to_season("season") if "season" in has else pl.lit(None, dtype=pl.Utf8),
        },
    )
    return _result("fashion", t.source, t.rows_read, {"catalogue": catalogue}, [t.quarantine, q1, q2], notes)


_NULL_CUSTOMER = ["", "na", "nan", "null", "none", "n/a"]


def load_online_retail(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """UCI Online Retail transactions; returns (negative quantities) are kept, NA customers -> null."""
    path = _file_in(path, ("transactions.csv", "online_retail.csv", "Online Retail.csv"))
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
    return _result(
        "online-retail",
        t.source,
        t.rows_read,
        {"transactions": V.conform(good, "transactions")},
        [t.quarantine, q1],
        notes,
    )


_INSTACART_COLUMNS = ["product_id", "product_name", "aisle_id", "department_id"]


def _lookup(path: Path, key: str, value: str, encoding: str | None, notes: list[str]) -> pl.DataFrame:
    t = read_delimited(path, encoding=encoding, notes=notes)
    V.require_columns(t.source, t.columns, [key, value])
    return t.df.select(V.text(key).alias(key), V.text(value).alias(value)).unique(key, keep="first")


def load_instacart(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """Instacart products (headerless or with header) plus aisles.csv / departments.csv lookups."""
    path = _file_in(path, ("products_noheader.csv", "products.csv"))
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
    catalogue = _catalogue(
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
    return _result("instacart", t.source, t.rows_read, {"catalogue": catalogue}, [t.quarantine, q1, q2], notes)


# ----------------------------------------------------------------------------- canonical

# Text columns where blank means unknown (null), as the loaders of real formats produce them.
_NULLABLE_TEXT = {"intent", "season", "user_hash", "customer_hash", "country"}
_ID_COLUMN = {"catalogue": "item_id", "queries": "query_id"}
_REQUIRED_TEXT = {"catalogue": ("title", V.EMPTY_TITLE), "queries": ("text", V.EMPTY_TEXT)}


def detect_kind(columns: list[str]) -> str | None:
    """The canonical kind whose columns are all present (the largest such schema), else None."""
    matches = [k for k, s in SCHEMAS.items() if all(c in columns for c in s)]
    return max(matches, key=lambda k: len(SCHEMAS[k])) if matches else None


def _closest_kind(columns: list[str]) -> str:
    return max(SCHEMAS, key=lambda k: (sum(c in columns for c in SCHEMAS[k]) / len(SCHEMAS[k]), -len(SCHEMAS[k])))


def _canonical_frame(df: pl.DataFrame, kind: str, source: str) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Cast a frame that already has the canonical column names; quarantine rows whose casts fail."""
    schema = SCHEMAS[kind]
    exprs: dict[str, pl.Expr] = {}
    rules: list[tuple[pl.Expr, str]] = []
    for c, dtype in schema.items():
        src = df.schema[c]
        if c in _NULLABLE_TEXT and src in (pl.Utf8, pl.String):
            exprs[c] = V.text_or_null(c)
            continue
        if src == dtype:
            exprs[c] = pl.col(c)
            continue
        if src in (pl.Utf8, pl.String, pl.Categorical):
            if dtype == pl.Float64:
                exprs[c] = V.to_float(c)
                rules.append((V.bad_number(c), V.UNPARSEABLE_NUMBER))
            elif dtype in (pl.Int32, pl.Int64):
                exprs[c] = V.to_int(c).cast(dtype, strict=False)
                rules.append((V.bad_number(c, V.to_int(c)), V.UNPARSEABLE_NUMBER))
            elif dtype == pl.Boolean:
                exprs[c] = V.to_bool(c, default=True)
                rules.append((V.to_bool(c).is_null(), V.BAD_VALUE))
            elif isinstance(dtype, pl.Datetime):
                exprs[c] = V.to_timestamp(c)
                rules.append((V.to_timestamp(c).is_null(), V.BAD_TIMESTAMP))
            else:
                exprs[c] = pl.col(c).cast(pl.Utf8)
        else:
            exprs[c] = pl.col(c).cast(dtype, strict=False)
            rules.append((pl.col(c).is_not_null() & pl.col(c).cast(dtype, strict=False).is_null(), V.BAD_VALUE))
    if kind in _ID_COLUMN:
        rules.insert(0, (V.blank(_ID_COLUMN[kind]), V.EMPTY_ID))
    elif "item_id" in schema:
        rules.insert(0, (V.blank("item_id"), V.EMPTY_ID))
    if kind in _REQUIRED_TEXT:
        col, reason = _REQUIRED_TEXT[kind]
        rules.insert(1, (V.blank(col), reason))
    if "timestamp" in schema and isinstance(df.schema["timestamp"], pl.Datetime):
        rules.append((pl.col("timestamp").is_null(), V.BAD_TIMESTAMP))
    if "price" in schema:
        rules.append((exprs["price"] < 0, V.NEGATIVE_PRICE))
    if "unit_price" in schema:
        rules.append((exprs["unit_price"] < 0, V.NEGATIVE_PRICE))
    if kind == "catalogue":
        exprs["season"] = V.to_season("season")
        rules.append((~V.blank("season") & V.to_season("season").is_null(), V.BAD_VALUE))
        exprs["attributes"] = pl.when(V.blank("attributes")).then(pl.lit("{}")).otherwise(pl.col("attributes"))
        exprs["description"] = V.text("description")
        exprs["category_path"] = V.text("category_path")
        exprs["popularity"] = exprs["popularity"].fill_null(0.0)
        exprs["in_stock"] = exprs["in_stock"].fill_null(True)
    raw = pl.struct(list(schema)).struct.json_encode() if df.height else pl.lit("")
    good, q1 = V.apply_rules(df, rules, source=source, raw=raw)
    parts = [q1]
    if kind in _ID_COLUMN:
        good, q2 = V.quarantine_duplicates(good, _ID_COLUMN[kind], source=source, raw=raw)
        parts.append(q2)
    return good.select([exprs[c].cast(t).alias(c) for c, t in schema.items()]), parts


def _read_canonical_file(
    path: Path, kind: str | None, encoding: str | None, notes: list[str]
) -> tuple[str, pl.DataFrame, list[pl.DataFrame], int]:
    source = str(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        if not path.exists():
            raise DataError(f"{path}: file not found")
        try:
            df = pl.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - polars raises several types for a bad file
            raise DataError(f"{path}: unreadable parquet ({str(e).splitlines()[0]})") from e
        if df.height == 0 and not df.columns:
            raise DataError(f"{path}: empty file")
        df = df.with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias("__row"))
        q0: list[pl.DataFrame] = []
        columns = [c for c in df.columns if c != "__row"]
        rows = df.height
    else:
        t = read_delimited(path, encoding=encoding, notes=notes)
        df, q0, columns, rows = t.df, [t.quarantine], t.columns, t.rows_read
    kind = kind or _kind_from_name(path) or detect_kind(columns)
    if kind is None:
        closest = _closest_kind(columns)
        V.require_columns(source, columns, list(SCHEMAS[closest]))
    if kind not in SCHEMAS:
        raise DataError(f"{path}: unknown kind {kind!r} (known: {', '.join(SCHEMAS)})")
    V.require_columns(source, columns, list(SCHEMAS[kind]))
    frame, parts = _canonical_frame(df, kind, source)
    return kind, frame, q0 + parts, rows


def _kind_from_name(path: Path) -> str | None:
    stem = path.name.split(".")[0]
    return stem if stem in SCHEMAS else None


def load_canonical(
    path: Path, salt: str | None = None, encoding: str | None = None, kind: str | None = None
) -> LoadResult:
    """CSV or parquet already in a canonical schema: one file (kind from its columns or name, or ``kind``),
    or a folder of ``<kind>.parquet`` / ``<kind>.csv`` files (what ``shoprank data synth`` writes)."""
    notes: list[str] = []
    if path.is_dir():
        files = []
        for k in SCHEMAS:
            for ext in (".parquet", ".csv"):
                if (path / f"{k}{ext}").exists():
                    files.append((k, path / f"{k}{ext}"))
                    break
        if not files:
            raise DataError(
                f"{path}: no canonical files (catalogue/queries/judgements/events/transactions "
                ".parquet or .csv) in this folder"
            )
    else:
        files = [(kind, path)]
    frames: dict[str, pl.DataFrame] = {}
    q_parts: list[pl.DataFrame] = []
    rows = 0
    for k, f in files:
        got, frame, parts, n = _read_canonical_file(f, k, encoding, notes)
        frames[got] = frame
        q_parts += parts
        rows += n
    return _result("canonical", str(path), rows, frames, q_parts, notes)


# ----------------------------------------------------------------------------- registry

Loader = Callable[..., LoadResult]

FORMATS: dict[str, Loader] = {
    "homedepot": load_homedepot,
    "bestbuy-clicks": load_bestbuy_clicks,
    "bestbuy-products": load_bestbuy_products,
    "wands": load_wands,
    "fashion": load_fashion,
    "online-retail": load_online_retail,
    "instacart": load_instacart,
    "canonical": load_canonical,
}

FORMAT_HELP: dict[str, str] = {
    "homedepot": "Home Depot relevance CSV (latin-1) -> catalogue, queries, judgements",
    "bestbuy-clicks": "Best Buy click log CSV -> events (clicks), queries (intent = clicked category)",
    "bestbuy-products": "Best Buy products XML or .xml.zip -> catalogue",
    "wands": "WANDS query.csv (tab-separated) -> queries; a folder adds product.csv / label.csv",
    "fashion": "Myntra styles.csv -> catalogue with seasons",
    "online-retail": "UCI Online Retail CSV -> transactions (returns kept as negative quantities)",
    "instacart": "Instacart products (headerless) + aisles.csv/departments.csv -> catalogue",
    "canonical": "CSV/parquet in a canonical schema (a file, or a folder of <kind>.parquet files)",
}


def load(path: str | Path, fmt: str, salt: str | None = None, **options: Any) -> LoadResult:
    """Load ``path`` in format ``fmt`` (see FORMATS) into canonical frames plus a quarantine."""
    name = fmt.strip().lower().replace("_", "-")
    if name not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    return FORMATS[name](p, salt=salt, **options)


def load_json_attributes(s: str) -> dict[str, Any]:
    """Parse a catalogue ``attributes`` value (JSON object text)."""
    return json.loads(s) if s else {}
