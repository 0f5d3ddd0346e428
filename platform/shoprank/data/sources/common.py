"""What every per-dataset loader shares: the result type, ids, reading delimited text, catalogue helpers.

:func:`read_delimited` (from :mod:`.delimited`, on the bytes :mod:`.rawtext` reads) reads every field
as text; the loaders then cast with vectorised Polars expressions (:mod:`shoprank.data.validate`)
and quarantine rows whose casts fail, never dropping them silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.delimited import DelimitedTable, read_delimited
from shoprank.errors import DataError
from shoprank.hashing import hash_id, id_salt

__all__ = [
    "DelimitedTable",
    "LoadResult",
    "catalogue_frame",
    "file_in",
    "hash_ids",
    "make_result",
    "normalize_query",
    "query_ids",
    "read_delimited",
    "stable_query_id",
]


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
    """``stable_query_id`` of every query text (computed once per distinct text)."""
    return _map_unique(s.cast(pl.Utf8), stable_query_id)


def hash_ids(s: pl.Series, salt: str | None) -> pl.Series:
    """Salted hashes of user/customer ids (null stays null); see shoprank.hashing."""
    salt = id_salt(salt)
    return _map_unique(s.cast(pl.Utf8), lambda x: hash_id(x, salt))


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


def catalogue_frame(df: pl.DataFrame, exprs: dict[str, pl.Expr]) -> pl.DataFrame:
    """A canonical catalogue from ``exprs`` (column -> expression); unnamed columns get their defaults."""
    cols = {**_catalogue_defaults(), **exprs}
    return V.conform(df.select([e.alias(k) for k, e in cols.items()]), "catalogue")


def make_result(
    fmt: str, t_source: str, rows_read: int, frames: dict[str, pl.DataFrame], q: list[pl.DataFrame], notes: list[str]
) -> LoadResult:
    """The LoadResult of a loader, after checking every frame against its canonical schema."""
    for kind, frame in frames.items():
        V.check_schema(frame, kind)
    return LoadResult(
        frames=frames, quarantine=V.concat_quarantine(q), rows_read=rows_read, source=t_source, fmt=fmt, notes=notes
    )


def file_in(path: Path, candidates: tuple[str, ...]) -> Path:
    """``path`` itself, or the first of ``candidates`` inside it when it is a folder (or a compressed
    copy of one: ``name.gz``, ``.bz2``, ``.xz``, ``.zip``, which the readers open directly)."""
    if path.is_dir():
        for name in candidates:
            for suffix in ("", ".gz", ".bz2", ".xz", ".zip"):
                if (path / (name + suffix)).exists():
                    return path / (name + suffix)
        raise DataError(f"{path}: no {' or '.join(candidates)} in this folder")
    return path
