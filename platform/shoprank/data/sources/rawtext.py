"""An input file's bytes, before any parsing: file checks, archives and text encodings.

- :func:`check_file`: the path is an existing, non-empty regular file (not a folder, FIFO or device).
- :func:`read_input`: the whole file, gzip / bzip2 / xz decompressed and a zip's one data member
  extracted (told apart by their magic bytes, not the file name), with at most
  ``MAX_DECOMPRESSED_BYTES`` inflated; a corrupt, truncated, encrypted or empty archive, or a zip
  whose members are not the expected kind, is a one-line :class:`DataError`.
- :func:`open_members`: the same, streamed, for the XML loader.
- :func:`decode_text`: text as UTF-8 bytes for the parser. The requested encoding decodes *first*;
  the binary check (NUL characters near the start) runs on the decoded text, so UTF-16/32 files
  pass. Without an encoding, a byte-order mark picks UTF-8/16/32, else UTF-8 when valid, else latin-1.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shoprank.errors import DataError

# The most bytes one compressed input may inflate to (a decompression bomb is refused, not inflated).
MAX_DECOMPRESSED_BYTES = 4 << 30
# The binary check looks for NUL characters in this many leading characters of the decoded text.
BINARY_CHECK_CHARS = 65536

# What reading a damaged archive raises (zipfile, gzip, zlib, bz2, lzma; RuntimeError: encrypted zip member).
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError, lzma.LZMAError, RuntimeError, NotImplementedError, ValueError,
)  # fmt: skip

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip archive
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"PAR1", "parquet"),
)
_NOT_TEXT = "not a text file but a "  # how read_input words a damaged archive
_STREAMS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": lambda f: gzip.GzipFile(fileobj=f),
    "bzip2": bz2.BZ2File,
    "xz": lzma.LZMAFile,
}
_BOMS: tuple[tuple[bytes, str], ...] = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def sniff(head: bytes) -> str | None:
    """The container format that ``head`` (a file's first bytes) starts with, or None for anything else."""
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bzip2"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _shown(name: str) -> str:
    """An archive member's name for a one-line message: quoted, escaped, at most 80 characters."""
    return repr(name[:80] + ("..." if len(name) > 80 else ""))


def is_blank(data: bytes) -> bool:
    """Empty or only whitespace (without copying ``data`` as ``strip`` would)."""
    return not data or data.isspace()


def check_file(path: Path) -> None:
    """DataError unless ``path`` is an existing, non-empty regular file."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a device, FIFO or socket)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")


def _archive_error(path: Path, fmt: str, member: str | None, e: BaseException, lead: str = "") -> DataError:
    where = f"member {_shown(member)}: " if member else ""
    if isinstance(e, RuntimeError) and "encrypted" in str(e):
        return DataError(f"{path}: encrypted zip {where.rstrip(': ') or 'member'}; decrypt it first")
    if isinstance(e, NotImplementedError):
        return DataError(f"{path}: zip {where}unsupported compression method ({e})")
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return DataError(f"{path}: {lead}corrupt or truncated {fmt} archive ({where}{text})")


def _read_capped(path: Path, fh: IO[bytes], fmt: str, member: str | None, lead: str = "") -> bytes:
    try:
        data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except ARCHIVE_ERRORS as e:
        raise _archive_error(path, fmt, member, e, lead) from e
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{path}: decompresses to over {MAX_DECOMPRESSED_BYTES:,} bytes (the limit); refused")
    return data


def _members(path: Path, zf: zipfile.ZipFile, suffixes: tuple[str, ...]) -> list[zipfile.ZipInfo]:
    """The zip's members with one of ``suffixes`` (folders, ``__MACOSX/`` and dot files left out)."""
    files = [
        i for i in zf.infolist()
        if not i.is_dir() and not i.filename.startswith("__MACOSX/") and not Path(i.filename).name.startswith(".")
    ]  # fmt: skip
    if not files:
        raise DataError(f"{path}: zip archive is empty")
    wanted = [i for i in files if i.filename.lower().endswith(suffixes)]
    if not wanted:
        found = ", ".join(_shown(i.filename) for i in files[:5]) + (", ..." if len(files) > 5 else "")
        raise DataError(f"{path}: zip archive holds no {'/'.join(suffixes)} file (found: {found})")
    return wanted


def _open_zip(path: Path, source: IO[bytes], lead: str = "") -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except ARCHIVE_ERRORS as e:
        raise _archive_error(path, "zip", None, e, lead) from e


def _unzip_one(path: Path, data: bytes, suffixes: tuple[str, ...]) -> tuple[bytes, str]:
    with _open_zip(path, io.BytesIO(data), _NOT_TEXT) as zf:
        wanted = _members(path, zf, suffixes)
        if len(wanted) > 1:
            inner = path.name.removesuffix(".zip").lower()
            named = [i for i in wanted if Path(i.filename).name.lower() == inner]
            if len(named) != 1:
                names = ", ".join(_shown(i.filename) for i in wanted[:5]) + (", ..." if len(wanted) > 5 else "")
                raise DataError(f"{path}: zip archive holds {len(wanted)} data files ({names}); unzip it and pass one")
            wanted = named
        info = wanted[0]
        if info.file_size > MAX_DECOMPRESSED_BYTES:
            raise DataError(f"{path}: member {_shown(info.filename)} is {info.file_size:,} bytes, over the limit")
        try:
            fh = zf.open(info)
        except ARCHIVE_ERRORS as e:
            raise _archive_error(path, "zip", info.filename, e, _NOT_TEXT) from e
        with fh:
            return _read_capped(path, fh, "zip", info.filename, _NOT_TEXT), info.filename


def read_input(path: Path, suffixes: tuple[str, ...] = (".csv", ".tsv", ".txt")) -> tuple[bytes, str]:
    """The file's bytes, decompressed (gzip, bzip2, xz, or the one zip member with one of ``suffixes``),
    and a name for it in messages: the path, or ``path[member]`` for a zip member."""
    check_file(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from e
    fmt = sniff(data[:8])
    label = str(path)
    if fmt in _STREAMS:
        data = _read_capped(path, _STREAMS[fmt](io.BytesIO(data)), fmt, None, _NOT_TEXT)
    elif fmt == "zip":
        data, member = _unzip_one(path, data, suffixes)
        label = f"{path}[{_shown(member)[1:-1]}]"
    elif fmt == "parquet":
        raise DataError(f"{path}: a parquet file, not delimited text (canonical parquet: --format canonical)")
    elif fmt is not None:
        raise DataError(f"{path}: a {fmt} archive; unpack it first (gzip, bzip2, xz and zip are read directly)")
    if fmt is not None:
        inner = sniff(data[:8])
        if inner is not None and inner != "parquet":
            raise DataError(f"{label}: a {inner} archive inside a {fmt} archive; unpack it first")
        if is_blank(data):
            raise DataError(f"{label}: empty after decompressing")
    elif is_blank(data):
        raise DataError(f"{path}: empty file")
    return data, label


@contextmanager
def open_members(path: Path, suffixes: tuple[str, ...]) -> Iterator[list[tuple[str, IO[bytes]]]]:
    """Binary streams of a file: itself, its gzip/bzip2/xz content, or each zip member with one of ``suffixes``.

    Reading a stream may still raise one of ``ARCHIVE_ERRORS`` (damage is found as it is inflated):
    the caller turns it into a DataError with :func:`archive_error`."""
    check_file(path)
    with open(path, "rb") as raw:
        fmt = sniff(raw.read(8))
        raw.seek(0)
        if fmt in _STREAMS:
            yield [(str(path), _STREAMS[fmt](raw))]
        elif fmt == "zip":
            with _open_zip(path, raw) as zf:
                streams = []
                for info in _members(path, zf, suffixes):
                    try:
                        streams.append((info.filename, zf.open(info)))
                    except ARCHIVE_ERRORS as e:
                        raise _archive_error(path, "zip", info.filename, e) from e
                yield streams
        elif fmt is not None:
            raise DataError(f"{path}: a {fmt} file, expected {'/'.join(suffixes)} (or a gzip/zip of it)")
        else:
            yield [(str(path), raw)]


def archive_error(path: Path, e: BaseException) -> DataError:
    """The one-line DataError for a damaged archive found while streaming it (see :func:`open_members`)."""
    with open(path, "rb") as fh:
        fmt = sniff(fh.read(8))
    if fmt is None:
        return DataError(f"{path}: cannot read file ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return _archive_error(path, fmt, None, e)


# ----------------------------------------------------------------------------- encodings


def _utf16_hint(head: bytes) -> str:
    """A hint when NUL bytes sit at every other position (UTF-16 without a byte-order mark)."""
    even, odd = head[0::2], head[1::2]
    if odd and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "; it looks like UTF-16-LE without a byte-order mark: pass --encoding utf-16-le"
    if even and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "; it looks like UTF-16-BE without a byte-order mark: pass --encoding utf-16-be"
    return "; a binary or compressed file?"


def decode_text(label: str, data: bytes, encoding: str | None, notes: list[str]) -> bytes:
    """``data`` as UTF-8 bytes: decoded with ``encoding`` (or detected, see the module doc), then
    checked for NUL characters; a leading byte-order mark is dropped."""
    enc = (encoding or "auto").strip().lower().replace("_", "-")
    if enc != "auto":
        try:
            enc = codecs.lookup(enc).name
        except LookupError as e:
            raise DataError(f"unknown encoding {encoding!r}") from e
    else:
        enc = next((name for bom, name in _BOMS if data.startswith(bom)), "auto")
        if enc not in ("auto", "utf-8"):
            notes.append(f"{Path(label).name}: decoded as {enc.upper()} (byte-order mark)")
    if enc == "auto" or enc == "utf-8":
        if b"\x00" in data[:BINARY_CHECK_CHARS]:
            raise DataError(f"{label}: not a text file (NUL bytes){_utf16_hint(data[:4096])}")
        data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError as e:
            if enc == "utf-8":
                raise DataError(f"{label}: not valid UTF-8 at byte {e.start}; pass its --encoding, e.g. latin-1") from e
        enc = "latin-1"
        notes.append(f"{Path(label).name}: not UTF-8, decoded as latin-1")
    shown = encoding or enc  # the name as the user spelled it
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not valid {shown} at byte {e.start} ({e.reason})") from e
    text = text.removeprefix("\ufeff")
    if "\x00" in text[:BINARY_CHECK_CHARS]:
        raise DataError(f"{label}: not a text file (NUL characters after decoding as {shown}); wrong --encoding?")
    return text.encode("utf-8")
