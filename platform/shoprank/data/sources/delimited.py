"""Delimited text read as text fields: pyarrow's CSV parser, plus the checks it does not make.

The bytes come from :mod:`.rawtext` (decompressed, decoded to UTF-8). The header is read here: a
duplicated column name, an empty header or a quote left open in it is a one-line DataError.

Quotes follow pyarrow's (RFC 4180) rules: a quote opens a quoted field only at the start of a
field, ``""`` inside one is a literal quote, and a quoted field may span lines. A quote left open
would swallow the lines after it into one field, so a record that spans lines is kept only when its
quote closes within ``MAX_RECORD_BYTES`` and none of its lines is a record of its own: no line
between the first and the closing one has the expected field count by itself, and the closing line
does not either when the first line would too (its opening quote read as a plain character).
Otherwise the line that opened the quote is quarantined as "unclosed quote" and reading resumes at
the next line, so every later line that is a well-formed record is kept. That recovery is possible
because records are one per line apart from quoted line breaks; the price is that a genuine
multi-line value whose lines each look like whole records is quarantined too (its reason says why).
Records over ``MAX_RECORD_BYTES`` ("record too long") and rows holding a NUL character past the
binary check are quarantined as well. Files without line-spanning or unclosed quotes take the fast
path (pyarrow alone, multithreaded) and pay only a vectorised check.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from shoprank.data import validate as V
from shoprank.data.sources.rawtext import decode_text, is_blank, read_input
from shoprank.errors import DataError

# A record (all its lines) longer than this is quarantined; a quote still open after this many bytes is unclosed.
MAX_RECORD_BYTES = 1 << 20
_QUOTE = 0x22
MAX_COLUMNS = 10_000
_RAW_CHARS = 2000  # quarantined raw text of a too-long record is cut to this many characters

BadRows = list[tuple[int, int, str]]  # pyarrow's invalid rows: (record number, fields, text)


@dataclass
class DelimitedTable:
    """A delimited file read as text: the frame, its column names, the rows quarantined while parsing."""

    df: pl.DataFrame  # all Utf8 columns plus "__row" (1-based data row)
    columns: list[str]
    quarantine: pl.DataFrame
    rows_read: int
    source: str


def scan_line(line: bytes, sep: bytes, in_quote: bool = False, at_start: bool = True) -> tuple[bool, int, int]:
    """Read one line (no line break) as pyarrow would: (ends inside a quoted field, fields counted,
    offset of the quote that opened the still-open field or -1). ``in_quote``: the line continues a
    quoted field; ``at_start=False``: the line starts in the middle of an unquoted field."""
    n, i, size, opened = 1, 0, len(line), -1
    at_start = at_start and not in_quote
    while i < size:
        if in_quote:
            j = line.find(b'"', i)
            if j < 0:
                return True, n, opened
            if line[j + 1 : j + 2] == b'"':
                i = j + 2
            else:
                in_quote, i, opened = False, j + 1, -1
            continue
        if at_start and line[i] == _QUOTE:
            in_quote, at_start, opened, i = True, False, i, i + 1
            continue
        j = line.find(sep, i)
        if j < 0:
            return False, n, -1
        n, i, at_start = n + 1, j + 1, True
    return in_quote, n, opened


def _is_record(line: bytes, sep: bytes, n_expected: int) -> bool:
    """The line, read alone, is a whole record: no quote left open, the expected number of fields."""
    if b'"' not in line:
        return bool(line) and line.count(sep) + 1 == n_expected
    still_open, n, _ = scan_line(line, sep)
    return not still_open and n == n_expected


def _literal_fields(line: bytes, sep: bytes) -> int:
    """Fields of a line whose last quote is left open, when that quote is read as a plain character."""
    _, n, opened = scan_line(line, sep)
    return n - 1 + scan_line(line[opened + 1 :], sep, at_start=False)[1]


def split_records(body: bytes, sep: bytes, n_expected: int) -> tuple[bytes, list[int], list[tuple[int, str, str]]]:
    """The records of ``body`` under the module's quote rules: (the kept records' text, the data row
    of each kept record, the quarantined lines as (row, reason, raw)). Empty lines are skipped.

    Linear in the file: each line is scanned once on its own and once as the continuation of a
    quoted field; finding where a quote closes is then a lookup."""
    lines = body.splitlines(keepends=True)
    texts = [ln.rstrip(b"\r\n") for ln in lines]
    alone = np.fromiter((_is_record(t, sep, n_expected) for t in texts), dtype=bool, count=len(texts))
    closes = np.fromiter(
        (b'"' in t and not scan_line(t, sep, in_quote=True)[0] for t in texts), dtype=bool, count=len(texts)
    )
    closing = np.flatnonzero(closes)
    n_alone = np.concatenate([[0], np.cumsum(alone)])
    offset = np.concatenate([[0], np.cumsum([len(ln) for ln in lines])])
    kept: list[bytes] = []
    rows: list[int] = []
    bad: list[tuple[int, str, str]] = []
    row = i = 0
    while i < len(lines):
        text = texts[i]
        if not text:
            i += 1
            continue
        row += 1
        end = i + 1
        if b'"' in text and scan_line(text, sep)[0]:
            k = int(np.searchsorted(closing, i + 1))
            j = int(closing[k]) if k < len(closing) else -1  # the line where the quote closes
            unclosed = (
                j < 0
                or offset[j + 1] - offset[i] > MAX_RECORD_BYTES
                or n_alone[j] > n_alone[i + 1]  # a line in between is a record of its own
                or (alone[j] and _literal_fields(text, sep) == n_expected)  # so are the first and closing lines
            )
            if unclosed:
                bad.append((row, V.UNCLOSED_QUOTE, text.decode("utf-8", "replace")[:_RAW_CHARS]))
                i += 1
                continue
            end = j + 1
        record = b"".join(lines[i:end])
        kept.append(record if record.endswith((b"\n", b"\r")) else record + b"\n")
        rows.append(row)
        i = end
    return b"".join(kept), rows, bad


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    """(the first line without its line break, the rest); any of \\n, \\r\\n, \\r ends the line."""
    ends = [p for p in (data.find(b"\n"), data.find(b"\r")) if p >= 0]
    if not ends:
        return data, b""
    end = min(ends)
    rest = data[end + 2 :] if data[end : end + 2] == b"\r\n" else data[end + 1 :]
    return data[:end], rest


def _header_columns(label: str, line: bytes, sep: str) -> list[str]:
    if scan_line(line, sep.encode())[0]:
        raise DataError(f"{label}: the header line has an unclosed quote")
    columns = [c.strip() for c in next(csv.reader([line.decode("utf-8")], delimiter=sep), [])]
    if not any(columns):
        raise DataError(f"{label}: empty header line")
    if len(columns) > MAX_COLUMNS:
        raise DataError(f"{label}: the header has {len(columns):,} columns (over {MAX_COLUMNS:,}); not a header?")
    seen: dict[str, int] = {}
    for i, c in enumerate(columns, 1):
        if c and c in seen:
            raise DataError(f"{label}: duplicate column {c[:80]!r} in the header (columns {seen[c]} and {i})")
        seen.setdefault(c, i)
    return columns


def _parse(body: bytes, sep: str, internal: list[str], use_threads: bool) -> tuple[pa.Table, BadRows]:
    bad: BadRows = []

    def handler(row: Any) -> str:
        bad.append((row.number or 0, row.actual_columns, row.text))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(use_threads=use_threads, column_names=internal, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in internal},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
        ),
    )
    return table, bad


def _parse_checked(label: str, body: bytes, sep: str, internal: list[str]) -> tuple[pa.Table, BadRows]:
    try:
        table, bad = _parse(body, sep, internal, True)
        if bad:  # re-read single-threaded: only then does pyarrow report row numbers
            table, bad = _parse(body, sep, internal, False)
    except pa.ArrowInvalid as e:
        raise DataError(f"{label}: unreadable as delimited text ({str(e).splitlines()[0]})") from e
    return table, bad


def _needs_split(df: pl.DataFrame, bad: BadRows, body: bytes, sep: bytes) -> bool:
    """A record spans lines, or the last line leaves a quote open (pyarrow takes both silently)."""
    if any("\n" in text or "\r" in text for _, _, text in bad):
        return True
    if df.height and df.select(pl.any_horizontal(pl.all().str.contains(r"[\r\n]")).any()).item():
        return True
    last = body.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].rsplit(b"\r", 1)[-1]
    return b'"' in last and scan_line(last, sep)[0]


def _oversized(df: pl.DataFrame, internal: list[str], sep: str, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quarantine records over MAX_RECORD_BYTES and rows holding a NUL character."""
    if df.height == 0:
        return df, V.empty_quarantine()
    too_long = pl.sum_horizontal([pl.col(c).str.len_bytes() for c in internal]) > MAX_RECORD_BYTES
    nul = pl.any_horizontal([pl.col(c).str.contains("\x00", literal=True) for c in internal])
    good, q = V.apply_rules(
        df,
        [(too_long, V.RECORD_TOO_LONG), (nul, V.NUL_CHARACTER)],
        source=source,
        raw=V.raw_row(internal, sep).str.slice(0, _RAW_CHARS),
    )
    return good, q


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
    """Read a delimited text file (or a gzip/zip of one) with every field as text.

    ``header=None`` detects a header: the first record is a header when it equals ``names``.
    Rows with the wrong number of fields are quarantined ("wrong field count"), except that
    with ``join_index`` a row with *extra* fields (unquoted separators inside one text field)
    is repaired by joining the surplus fields back into field ``join_index``. Quotes, long
    records and NULs: see the module doc.
    """
    notes = notes if notes is not None else []
    source = str(path)
    raw, label = read_input(path)
    data = decode_text(label, raw, encoding, notes)
    del raw
    first_line, rest = _split_header(data)
    if header is None:
        first = next(csv.reader([first_line.decode("utf-8")], delimiter=sep), [])
        header = names is not None and [f.strip().lower() for f in first] == [n.lower() for n in names]
    if header:
        columns = _header_columns(label, first_line, sep)
        body = rest
    else:
        if names is None:
            raise DataError(f"{label}: no header and no column names given")
        columns, body = list(names), data
    del data
    if is_blank(body):
        raise DataError(f"{label}: no data rows (header only)" if header else f"{label}: no data rows")
    n_expected = len(columns)
    internal = [f"c{i}" for i in range(n_expected)]  # unique internal names: blank or odd header names are safe
    bsep = sep.encode()

    row_of: list[int] | None = None
    split_q: list[tuple[int, str, str]] = []
    try:
        table, bad = _parse_checked(label, body, sep, internal)
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        needs_split = _needs_split(df, bad, body, bsep)
    except DataError:
        needs_split = True  # e.g. an open quote swallowing more than a block: the line reader copes
    if needs_split:
        body, row_of, split_q = split_records(body, bsep, n_expected)
        if not is_blank(body):
            table, bad = _parse_checked(label, body, sep, internal)
            df = pl.from_arrow(table)
            assert isinstance(df, pl.DataFrame)
        else:
            bad, df = [], pl.DataFrame(schema={c: pl.Utf8 for c in internal})

    n_bad = len(bad)
    n_parsed = df.height + n_bad
    bad_rows = [num for num, _, _ in bad]
    kept_rows = np.setdiff1d(np.arange(1, n_parsed + 1), np.array(bad_rows, dtype=np.int64))[: df.height]
    if row_of is not None:  # records of the re-assembled body -> data rows of the file
        lookup = np.array([0, *row_of], dtype=np.int64)
        kept_rows = lookup[kept_rows]
        bad_rows = [int(lookup[r]) if 0 < r < len(lookup) else 0 for r in bad_rows]
    df = df.with_columns(pl.Series("__row", kept_rows, dtype=pl.Int64))

    repaired: list[list[str]] = []
    repaired_rows: list[int] = []
    q_rows: list[dict[str, Any]] = [{"source": source, "row": r, "reason": why, "raw": t} for r, why, t in split_q]
    for (_, actual, text), row in zip(bad, bad_rows, strict=True):
        if join_index is not None and actual > n_expected:
            fields = next(csv.reader([text], delimiter=sep), [])
            if len(fields) > n_expected:
                extra = len(fields) - n_expected
                joined = sep.join(fields[join_index : join_index + extra + 1])
                repaired.append(fields[:join_index] + [joined] + fields[join_index + extra + 1 :])
                repaired_rows.append(row)
                continue
        if len(text) > MAX_RECORD_BYTES:
            q_rows.append({"source": source, "row": row, "reason": V.RECORD_TOO_LONG, "raw": text[:_RAW_CHARS]})
        else:
            q_rows.append({"source": source, "row": row, "reason": V.WRONG_FIELD_COUNT, "raw": text})
    if repaired:
        fixed = pl.DataFrame(
            {**{c: [r[i] for r in repaired] for i, c in enumerate(internal)}, "__row": repaired_rows},
            schema={**{c: pl.Utf8 for c in internal}, "__row": pl.Int64},
        )
        df = pl.concat([df, fixed]).sort("__row")
        notes.append(f"{path.name}: {len(repaired)} rows with unquoted separators repaired (fields joined)")
    df, q_long = _oversized(df, internal, sep, source)
    rename = {}
    seen: set[str] = set()
    for i, c in zip(range(n_expected), columns, strict=True):
        name = c if c and c not in seen and c != "__row" else f"column_{i + 1}"
        seen.add(name)
        rename[internal[i]] = name
    df = df.rename(rename)
    total = n_parsed + len(split_q)
    if total == 0:
        raise DataError(f"{label}: no data rows")
    q = pl.DataFrame(q_rows, schema=V.QUARANTINE_SCHEMA) if q_rows else V.empty_quarantine()
    q = V.concat_quarantine([q, q_long])
    return DelimitedTable(df=df, columns=[rename[c] for c in internal], quarantine=q, rows_read=total, source=source)
