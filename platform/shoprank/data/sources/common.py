"""What every per-dataset loader shares: the result type, ids, reading delimited text, catalogue helpers.

:func:`read_delimited` reads every field as text (pyarrow's CSV parser, which reports rows with
the wrong number of fields); the loaders then cast with vectorised Polars expressions
(:mod:`shoprank.data.validate`) and quarantine rows whose casts fail, never dropping them silently.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from shoprank.data import validate as V
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
    """``stable_query_id`` of every query text (computed once per distinct text)."""
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
class DelimitedTable:
    """A delimited file read as text: the frame, its column names, the rows quarantined while parsing."""

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
) -> DelimitedTable:
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
    return DelimitedTable(df=df, columns=[rename[c] for c in internal], quarantine=q, rows_read=total, source=source)


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
    """``path`` itself, or the first of ``candidates`` inside it when it is a folder."""
    if path.is_dir():
        for name in candidates:
            if (path / name).exists():
                return path / name
        raise DataError(f"{path}: no {' or '.join(candidates)} in this folder")
    return path
