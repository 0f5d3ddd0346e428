"""Validation helpers shared by every loader: quarantine rules, casts and schema conformance.

A loader reads every field as text, then applies vectorised Polars casts. A row whose cast
fails (or that breaks a rule such as "title must not be empty") is *quarantined*: it moves to
a quarantine frame with its source file, 1-based data row number, a fixed reason and the raw
row text, and is counted in the summary. Good rows are kept. Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from shoprank.data.schemas import CATEGORY_SEP, SCHEMAS, SEASONS
from shoprank.errors import DataError

# Fixed quarantine reasons (the summary counts rows per reason, so keep these stable).
UNPARSEABLE_NUMBER = "unparseable number"
EMPTY_TITLE = "empty title"
EMPTY_TEXT = "empty text"
EMPTY_ID = "empty id"
DUPLICATE_ID = "duplicate id"
NEGATIVE_PRICE = "negative price"
BAD_TIMESTAMP = "bad timestamp"
WRONG_FIELD_COUNT = "wrong field count"
BAD_VALUE = "bad value"
UNCLOSED_QUOTE = "unclosed quote"  # a quote that would swallow the lines after it (see sources.delimited)
RECORD_TOO_LONG = "record too long"
NUL_CHARACTER = "NUL character"

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),
    "row": pl.Int64(),  # 1-based data row (header not counted); XML: 1-based entry number
    "reason": pl.Utf8(),
    "raw": pl.Utf8(),  # the raw row text, or a repr of the parsed fields
}

# Timestamp formats tried in order (chrono syntax; %.f accepts 0-9 fractional digits or none).
TIMESTAMP_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d",
    "%m/%d/%Y",
)

_SEASON_ALIASES = {"autumn": "fall", "all season": "all", "all-season": "all", "all seasons": "all"}


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


# ----------------------------------------------------------------------------- expressions


def blank(col: str) -> pl.Expr:
    """True where a text field is null or only whitespace."""
    return pl.col(col).is_null() | (pl.col(col).cast(pl.Utf8).str.strip_chars() == "")


def text(col: str) -> pl.Expr:
    """The field stripped of surrounding whitespace, never null ("" when missing)."""
    return pl.col(col).cast(pl.Utf8).str.strip_chars().fill_null("")


def text_or_null(col: str) -> pl.Expr:
    """The field stripped; null when blank."""
    return pl.when(blank(col)).then(None).otherwise(pl.col(col).cast(pl.Utf8).str.strip_chars())


def to_float(col: str) -> pl.Expr:
    """Text to Float64 (null when blank or unparseable; NaN and infinities count as unparseable)."""
    v = pl.col(col).cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(v.is_finite()).then(v).otherwise(None)


def to_int(col: str) -> pl.Expr:
    """Text to Int64; "3", "3.0" parse, "3.5" and "x" do not (null)."""
    f = to_float(col)
    return pl.when(f == f.round(0)).then(f.cast(pl.Int64, strict=False)).otherwise(None)


def bad_number(col: str, parsed: pl.Expr | None = None) -> pl.Expr:
    """True where the field has text but it does not parse as a number."""
    return ~blank(col) & (to_float(col) if parsed is None else parsed).is_null()


def to_timestamp(col: str, formats: Sequence[str] = TIMESTAMP_FORMATS) -> pl.Expr:
    s = pl.col(col).cast(pl.Utf8).str.strip_chars()
    return pl.coalesce([s.str.to_datetime(f, strict=False, time_unit="us") for f in formats])


def to_bool(col: str, default: bool | None = True) -> pl.Expr:
    """true/false/1/0/yes/no/y/n (any case); blank -> ``default``; anything else -> null."""
    s = pl.col(col).cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    return (
        pl.when(s.is_in(["true", "1", "yes", "y", "t"]))
        .then(True)
        .when(s.is_in(["false", "0", "no", "n", "f"]))
        .then(False)
        .when(s.is_null() | (s == ""))
        .then(default)
        .otherwise(None)
    )


def to_season(col: str) -> pl.Expr:
    """Lower-cased season name ("Autumn" -> "fall"); anything not a known season -> null."""
    s = pl.col(col).cast(pl.Utf8).str.strip_chars().str.to_lowercase().replace(_SEASON_ALIASES)
    return pl.when(s.is_in(list(SEASONS))).then(s).otherwise(None)


def join_path(cols: Iterable[str]) -> pl.Expr:
    """Non-blank parts joined with " > " (the category path); "" when all are blank."""
    parts = [text(c) for c in cols]
    return pl.concat_list(parts).list.eval(pl.element().filter(pl.element() != "")).list.join(CATEGORY_SEP)


def raw_row(cols: Sequence[str], sep: str = ",") -> pl.Expr:
    """A reconstruction of the raw row text from its (string) fields."""
    return pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in cols], separator=sep)


def json_object(fields: dict[str, pl.Expr]) -> pl.Expr:
    """A JSON object (as text) from named expressions; "{}" when there are none."""
    if not fields:
        return pl.lit("{}")
    return pl.struct([e.alias(k) for k, e in fields.items()]).struct.json_encode()


# ----------------------------------------------------------------------------- quarantine


def apply_rules(
    df: pl.DataFrame,
    rules: Sequence[tuple[pl.Expr, str]],
    *,
    source: str,
    raw: pl.Expr,
    row_col: str = "__row",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` into (good rows, quarantine rows); the first failing rule names the reason."""
    if df.height == 0:
        return df, empty_quarantine()
    if rules:
        reason = pl.coalesce([pl.when(cond.fill_null(False)).then(pl.lit(r)) for cond, r in rules])
    else:
        reason = pl.lit(None, dtype=pl.Utf8)
    marked = df.with_columns(reason.alias("__reason"))
    bad = marked.filter(pl.col("__reason").is_not_null())
    good = marked.filter(pl.col("__reason").is_null()).drop("__reason")
    q = bad.select(
        pl.lit(source).alias("source"),
        pl.col(row_col).cast(pl.Int64).alias("row"),
        pl.col("__reason").alias("reason"),
        raw.alias("raw"),
    )
    return good, q


def quarantine_duplicates(
    df: pl.DataFrame, key: str | Sequence[str], *, source: str, raw: pl.Expr, row_col: str = "__row"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each ``key``; later ones are quarantined as "duplicate id"."""
    keys = [key] if isinstance(key, str) else list(key)
    return apply_rules(
        df, [(~pl.struct(keys).is_first_distinct(), DUPLICATE_ID)], source=source, raw=raw, row_col=row_col
    )


def concat_quarantine(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    frames = [p.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()]) for p in parts if p.height]
    if not frames:
        return empty_quarantine()
    return pl.concat(frames).sort(["source", "row"], maintain_order=True)


# ----------------------------------------------------------------------------- schemas


def conform(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Exactly the canonical columns of ``kind``, in order, cast to their dtypes."""
    schema = SCHEMAS[kind]
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise DataError(f"{kind} frame: missing column {missing[0]!r}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def check_schema(df: pl.DataFrame, kind: str) -> None:
    """Raise DataError unless ``df`` has exactly the canonical columns and dtypes of ``kind``."""
    if kind not in SCHEMAS:
        raise DataError(f"unknown frame kind {kind!r} (known: {', '.join(SCHEMAS)})")
    want = SCHEMAS[kind]
    if list(df.columns) != list(want):
        raise DataError(f"{kind} frame: columns {df.columns} differ from the schema {list(want)}")
    for c, t in want.items():
        if df.schema[c] != t:
            raise DataError(f"{kind} frame: column {c!r} has dtype {df.schema[c]}, expected {t}")


def require_columns(source: str, present: Sequence[str], required: Sequence[str]) -> None:
    """One-line DataError naming the file and the first missing column."""
    missing = [c for c in required if c not in present]
    if missing:
        shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
        hint = next((f"; is the separator {s!r}?" for s in ";\t|," if len(present) == 1 and s in present[0]), "")
        raise DataError(f"{source}: missing required column {missing[0]!r} (found: {shown[:300]}){hint}")
