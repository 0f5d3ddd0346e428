"""Train/validation/test splits: grouped by query (no query in two splits), by normalised title
(no title in two splits: item tasks, see docs/splits.md) or by time (logs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import polars as pl

from shoprank.errors import DataError
from shoprank.hashing import unit_hash


class SplitConfig(Protocol):
    """The fractions a split needs (``shoprank.tasks.config.SplitConfig`` has them)."""

    val_fraction: float
    test_fraction: float

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


# -- the task examples' splits (``shoprank.tasks.examples``): a ``split`` column per row ---------
def hash_split(groups: pl.Series, split: SplitConfig, seed: int = 0) -> pl.Series:
    """Deterministic train/val/test by hashing the group key."""
    uniq = groups.unique().to_list()
    t, v = split.test_fraction, split.val_fraction

    def which(k: object) -> str:
        u = unit_hash(str(k), seed, "little")
        return "test" if u < t else ("val" if u < t + v else "train")

    mapping = {k: which(k) for k in uniq}
    return groups.replace_strict(mapping, return_dtype=pl.Utf8)


def time_cutoffs(ts: pl.Series, split: SplitConfig) -> tuple[object, object]:
    """(val_start, test_start): the last ``test_fraction`` of time is test, the slice before val."""
    s = ts.drop_nulls().sort()
    n = s.len()
    test_start = s[int(n * (1.0 - split.test_fraction))]
    val_start = s[int(n * (1.0 - split.test_fraction - split.val_fraction))]
    return val_start, test_start


def time_split(ts: pl.Series, split: SplitConfig) -> pl.Series:
    val_start, test_start = time_cutoffs(ts, split)
    return (
        pl.select(
            pl.when(ts >= test_start)
            .then(pl.lit("test"))
            .when(ts >= val_start)
            .then(pl.lit("val"))
            .otherwise(pl.lit("train"))
        )
        .to_series()
        .alias("split")
    )


def title_key(title: pl.Expr) -> pl.Expr:
    """A title's split key: lower case, every run of characters other than letters and digits one
    space, ends stripped ("Nike Men's Air-Max 90" and "nike men s air max 90" are one title; digits
    are kept, so model numbers stay apart)."""
    text = title.cast(pl.Utf8).fill_null("").str.to_lowercase()
    return text.str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


def split_by_title(
    df: pl.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, column: str = "title"
) -> dict[str, pl.DataFrame]:
    """Split items so that no normalised title (:func:`title_key`) lands in two splits."""
    if column not in df.columns:
        raise DataError(f"split_by_title: no column {column!r} in frame (columns: {', '.join(df.columns)})")
    keyed = df.with_columns(title_key(pl.col(column)).alias("__title"))
    return {k: v.drop("__title") for k, v in split_by_query(keyed, fractions, seed, "__title").items()}


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
