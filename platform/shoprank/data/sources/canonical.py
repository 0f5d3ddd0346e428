"""CSV or parquet already in a canonical schema (:mod:`shoprank.data.schemas`): one file or a folder.

A catalogue needs only ``item_id`` and ``title`` (``product_uid``/``product_title``/``product_description``,
the Home Depot names, are read as ``item_id``/``title``/``description`` when those are absent); its other
columns take their defaults (no attributes, no description, ...), so a bare catalogue still loads and scores.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.schemas import SCHEMAS
from shoprank.data.sources.common import LoadResult, make_result, read_delimited
from shoprank.data.sources.rawtext import check_file
from shoprank.errors import DataError

# Text columns where blank means unknown (null), as the loaders of real formats produce them.
_NULLABLE_TEXT = {"intent", "season", "user_hash", "customer_hash", "country"}
_ID_COLUMN = {"catalogue": "item_id", "queries": "query_id"}
_REQUIRED_TEXT = {"catalogue": ("title", V.EMPTY_TITLE), "queries": ("text", V.EMPTY_TEXT)}
# the columns a kind cannot do without (the rest of its schema takes _DEFAULTS); other kinds need all
_REQUIRED = {"catalogue": ("item_id", "title")}
_DEFAULTS = {"catalogue": {"description": "", "category_path": "", "attributes": "{}", "price": "", "rating": "",
                           "season": "", "in_stock": "true", "popularity": "0"}}  # fmt: skip
ALIASES = {"catalogue": {"item_id": "product_uid", "title": "product_title", "description": "product_description"}}


def _required(kind: str) -> list[str]:
    return list(_REQUIRED.get(kind, SCHEMAS[kind]))


def _aliased(columns: list[str], kind: str) -> list[str]:
    """``columns`` as ``kind`` reads them (an alias stands for its canonical name when that is absent)."""
    alias = {a: c for c, a in ALIASES.get(kind, {}).items() if c not in columns}
    return [alias.get(c, c) for c in columns]


def detect_kind(columns: list[str]) -> str | None:
    """The canonical kind whose required columns are all present (the most of its schema present, then
    the largest schema), else None."""
    matches = [k for k in SCHEMAS if all(c in _aliased(columns, k) for c in _required(k))]
    present = {k: sum(c in _aliased(columns, k) for c in SCHEMAS[k]) for k in matches}
    return max(matches, key=lambda k: (present[k], len(SCHEMAS[k]))) if matches else None


def conform_columns(df: pl.DataFrame, kind: str, notes: list[str] | None = None) -> pl.DataFrame:
    """``df`` with ``kind``'s aliases renamed and its missing optional columns at their defaults (as text)."""
    columns = _aliased(df.columns, kind)
    df = df.rename(dict(zip(df.columns, columns, strict=True)))
    missing = {c: v for c, v in _DEFAULTS.get(kind, {}).items() if c not in df.columns}
    if missing and notes is not None:
        notes.append(f"{kind}: no {', '.join(missing)} column(s); defaults used")
    return df.with_columns(pl.lit(v, dtype=pl.Utf8).alias(c) for c, v in missing.items())


def _closest_kind(columns: list[str]) -> str:
    return max(SCHEMAS, key=lambda k: (sum(c in columns for c in SCHEMAS[k]) / len(SCHEMAS[k]), -len(SCHEMAS[k])))


def canonical_frame(df: pl.DataFrame, kind: str, source: str) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
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
        check_file(path)
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
    V.require_columns(source, _aliased(columns, kind), _required(kind))
    frame, parts = canonical_frame(conform_columns(df, kind, notes), kind, source)
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
    return make_result("canonical", str(path), rows, frames, q_parts, notes)
