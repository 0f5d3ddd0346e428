"""Train/validation/test splits: grouped by query (no query in two splits) or by time (logs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from shoprank.errors import DataError
from shoprank.hashing import unit_hash

SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) == 0 or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise DataError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
    return f


def _names(n: int) -> list[str]:
    return list(SPLIT_NAMES) if n == 3 else [f"split{i}" for i in range(n)]


def split_by_query(
    df: pl.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, column: str = "query_id"
) -> dict[str, pl.DataFrame]:
    """Split rows into groups by ``column``: every query lands in exactly one split.

    Assignment is a deterministic hash of (seed, query), so it is stable when rows are added
    and identical across runs; fractions hold approximately (exactly in expectation).
    Returns {"train", "valid", "test"} for three fractions, else {"split0", ...}.
    """
    f = _check_fractions(fractions)
    if column not in df.columns:
        raise DataError(f"split_by_query: no column {column!r} in frame (columns: {', '.join(df.columns)})")
    keys = df.get_column(column).cast(pl.Utf8).unique().drop_nulls()
    u = np.array([unit_hash(k, seed, "big") for k in keys.to_list()])
    bounds = np.cumsum(f)[:-1]
    group = np.searchsorted(bounds, u, side="right") if len(u) else np.array([], dtype=np.int64)
    table = pl.DataFrame({"__key": keys, "__split": pl.Series(group, dtype=pl.Int64)})
    tagged = df.with_columns(pl.col(column).cast(pl.Utf8).alias("__key")).join(
        table, on="__key", how="left", maintain_order="left"
    )
    names = _names(len(f))
    return {name: tagged.filter(pl.col("__split") == i).drop("__key", "__split") for i, name in enumerate(names)}


def split_by_time(
    df: pl.DataFrame, column: str = "timestamp", fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, pl.DataFrame]:
    """Split a log by time quantiles: earlier rows train, later rows validate and test.

    Cut points are the time quantiles at the cumulative fractions; rows at exactly the same
    time stay together (a cut never falls inside one timestamp). Rows with a null time are
    left out of every split.
    """
    f = _check_fractions(fractions)
    if column not in df.columns:
        raise DataError(f"split_by_time: no column {column!r} in frame (columns: {', '.join(df.columns)})")
    names = _names(len(f))
    data = df.filter(pl.col(column).is_not_null())
    if data.height == 0:
        return {name: data for name in names}
    ts = data.get_column(column).sort()
    cuts = [ts[min(int(round(c * ts.len())), ts.len() - 1)] for c in np.cumsum(f)[:-1]]
    out: dict[str, pl.DataFrame] = {}
    lo = None
    for i, name in enumerate(names):
        hi = cuts[i] if i < len(cuts) else None
        cond = pl.lit(True)
        if lo is not None:
            cond = cond & (pl.col(column) >= lo)
        if hi is not None:
            cond = cond & (pl.col(column) < hi)
        out[name] = data.filter(cond)
        lo = hi
    return out
