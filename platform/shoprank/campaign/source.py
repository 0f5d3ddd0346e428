"""Catalogue input for campaign jobs: lazy Polars scans, fixed-size shards, row validation.

The driver only counts rows (a streaming ``select(pl.len())``); each shard is read by a scoring
actor as ``scan(...).slice(start, length)``, so no process ever holds the whole catalogue.
Rows that cannot be scored are quarantined with a reason; rows failing the campaign's
filters are kept out of scoring and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.data.schemas import CATALOGUE
from shoprank.errors import ConfigError, DataError
from shoprank.files import atomic_path

CANONICAL_FORMATS = ("parquet", "csv")
REQUIRED = ("item_id", "title")
DEFAULTS: dict[str, Any] = {
    "description": "",
    "category_path": None,
    "attributes": "{}",
    "price": None,
    "rating": None,
    "season": None,
    "in_stock": True,
    "popularity": 0.0,
}
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, start + length)`` of the catalogue."""

    index: int
    start: int
    length: int


def infer_format(path: str | Path, fmt: str | None) -> str:
    """``fmt`` if given, else from the file suffix (``.parquet``/``.pq`` or ``.csv``)."""
    if fmt:
        return fmt.lower()
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise DataError(f"{path}: cannot tell the catalogue format from the name; pass --format")


def scan(path: str | Path, fmt: str) -> pl.LazyFrame:
    """A lazy scan of a canonical catalogue file (CSV columns all read as text, cast later)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: catalogue not found")
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "csv":
        return pl.scan_csv(path, infer_schema=False, truncate_ragged_lines=True, encoding="utf8-lossy")
    raise DataError(f"{path}: format {fmt!r} is not a canonical catalogue format {CANONICAL_FORMATS}")


def stage_shared_format(path: str | Path, fmt: str, staged: Path, quarantine: Path) -> tuple[Path, int]:
    """Convert any format the data layer reads (``shoprank.data.loaders.load``) to canonical parquet.

    The loader's own quarantined rows go to ``quarantine`` (with a ``_reason`` column); returns
    the staged file and how many rows the loader quarantined.
    """
    try:
        from shoprank.data import loaders
    except ImportError as e:  # pragma: no cover - the data layer ships with the package
        raise DataError(f"{path}: format {fmt!r} needs shoprank.data.loaders ({e})") from None
    result = loaders.load(str(path), fmt)
    frames = getattr(result, "frames", {})
    if "catalogue" not in frames:
        raise DataError(f"{path}: format {fmt!r} yields no catalogue (it has {sorted(frames)})")
    atomic_write_parquet(frames["catalogue"].to_arrow(), staged)
    q = result.quarantine
    if q.height:
        q = q.with_columns(pl.all().cast(pl.Utf8))
        if "reason" in q.columns:
            q = q.rename({"reason": "_reason"})
        atomic_write_parquet(q.to_arrow(), quarantine)
    return staged, int(q.height)


def check_columns(lf: pl.LazyFrame, path: str | Path) -> list[str]:
    """Column names of the catalogue; DataError naming any missing required column."""
    names = lf.collect_schema().names()
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise DataError(f"{path}: catalogue lacks required column(s) {missing} (has {names})")
    return names


def check_filters(lf: pl.LazyFrame, filters: dict[str, Any], path: str | Path) -> None:
    """ConfigError naming a price filter when the catalogue has no price in any row.

    A price filter drops rows without a price, so on such a catalogue it would silently
    filter every item out; this check (one streaming pass over one column) fails up front.
    """
    used = [name for name in ("price_min", "price_max") if filters.get(name) is not None]
    if not used:
        return
    names = lf.collect_schema().names()
    has_price = "price" in names and bool(
        lf.select(_to_float(pl.col("price")).is_not_null().any()).collect(engine="streaming").item()
    )
    if not has_price:
        raise ConfigError(
            f"filters.{used[0]}: catalogue {path} has no prices (no row has a price), so the filter "
            "would drop every item; remove the price filter to score this catalogue"
        )


def count_rows(lf: pl.LazyFrame) -> int:
    """Row count with the streaming engine (nothing else is materialised)."""
    return int(lf.select(pl.len()).collect(engine="streaming").item())


def plan_shards(n_rows: int, shard_size: int) -> list[Shard]:
    """Deterministic fixed-size row ranges covering ``n_rows``."""
    return [Shard(k, s, min(shard_size, n_rows - s)) for k, s in enumerate(range(0, n_rows, shard_size))]


def _to_float(raw: pl.Expr) -> pl.Expr:
    return raw.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)


def validate(df: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns plus ``_reason`` (null for good rows); never raises on bad values."""
    exprs: list[pl.Expr] = []
    reasons: list[pl.Expr] = []
    cols = df.columns

    def present(name: str) -> pl.Expr:
        raw = pl.col(name)
        return raw.is_not_null() & (raw.cast(pl.Utf8).str.strip_chars() != "")

    for name, dtype in CATALOGUE.items():
        if name not in cols:
            default = DEFAULTS.get(name)
            exprs.append(pl.lit(default, dtype=dtype).alias(name))
            continue
        raw = pl.col(name)
        if df.schema[name] == dtype:
            value = raw
        elif dtype == pl.Float64():
            value = _to_float(raw)
            reasons.append(pl.when(present(name) & value.is_null()).then(pl.lit(f"bad {name}")))
        elif dtype == pl.Boolean():
            text = raw.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
            value = pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False).otherwise(None)
            reasons.append(pl.when(present(name) & value.is_null()).then(pl.lit(f"bad {name}")))
        else:
            value = raw.cast(pl.Utf8)
        if name in DEFAULTS and DEFAULTS[name] is not None:
            value = value.fill_null(pl.lit(DEFAULTS[name], dtype=dtype))
        exprs.append(value.cast(dtype).alias(name))
    out = df.select(exprs)
    out = out.with_columns(
        pl.col("item_id").str.strip_chars(),
        pl.col("season").str.strip_chars().str.to_lowercase().str.replace("autumn", "fall"),
    )
    checks = [
        pl.when(pl.col("item_id").is_null() | (pl.col("item_id") == "")).then(pl.lit("missing item_id")),
        pl.when(pl.col("title").is_null() | (pl.col("title").str.strip_chars() == "")).then(pl.lit("missing title")),
        pl.when(pl.col("price").is_nan() | (pl.col("price") < 0)).then(pl.lit("bad price")),
        pl.when(pl.col("rating").is_nan() | (pl.col("rating") < 0) | (pl.col("rating") > 5)).then(pl.lit("bad rating")),
        pl.when(pl.col("popularity").is_nan() | (pl.col("popularity") < 0)).then(pl.lit("bad popularity")),
    ]
    # The first failing check names the reason; parse failures come before range checks.
    if reasons:
        raw_reason = df.select(pl.coalesce(reasons).cast(pl.Utf8).alias("_raw_reason")).to_series()
    else:
        raw_reason = pl.Series("_raw_reason", [None] * df.height, dtype=pl.Utf8)
    out = out.with_columns(raw_reason.alias("_raw_reason"))
    return out.with_columns(pl.coalesce([pl.col("_raw_reason"), *checks]).alias("_reason")).drop("_raw_reason")


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write a zstd parquet file atomically (``shoprank.files.atomic_path``)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_shard(
    path: str,
    fmt: str,
    shard: int,
    start: int,
    length: int,
    filters: dict[str, Any],
    quarantine_dir: str,
) -> pa.Table:
    """One shard as an Arrow table with ``_shard``, ``_row`` and ``_status`` (ok|filtered|quarantined).

    Quarantined rows (with their raw values as text and the reason) go to
    ``quarantine_dir/part-SHARD.parquet``, written atomically; rewriting is idempotent.
    """
    raw = scan(path, fmt).slice(start, length).collect()
    if raw.height != length:
        raise DataError(f"{path}: shard {shard} expected {length} rows at offset {start}, read {raw.height}")
    df = validate(raw).with_columns(
        pl.lit(shard, dtype=pl.Int32).alias("_shard"), pl.int_range(0, pl.len(), dtype=pl.Int32).alias("_row")
    )
    fail = pl.lit(False)
    if filters.get("price_min") is not None:
        fail = fail | pl.col("price").is_null() | (pl.col("price") < filters["price_min"])
    if filters.get("price_max") is not None:
        fail = fail | pl.col("price").is_null() | (pl.col("price") > filters["price_max"])
    if filters.get("in_stock") is not None:
        fail = fail | (pl.col("in_stock").fill_null(True) != filters["in_stock"])
    df = df.with_columns(
        pl.when(pl.col("_reason").is_not_null())
        .then(pl.lit("quarantined"))
        .when(fail)
        .then(pl.lit("filtered"))
        .otherwise(pl.lit("ok"))
        .alias("_status")
    )
    bad = df.get_column("_reason").is_not_null()
    qpath = Path(quarantine_dir) / f"part-{shard:05d}.parquet"
    if bad.any():
        q = raw.with_columns(pl.all().cast(pl.Utf8)).with_columns(
            pl.int_range(start, start + length, dtype=pl.Int64).alias("_catalogue_row"),
            df.get_column("_reason").alias("_reason"),
        )
        atomic_write_parquet(q.filter(bad).to_arrow(), qpath)
    return df.to_arrow()
