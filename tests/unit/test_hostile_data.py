"""Hostile data files for ``shoprank data validate``: each gets exit 2 with one line naming the file and
the problem, or exit 0 with the bad rows quarantined under a reason and the good rows kept.

Every file is hand-made under tmp_path. Most cases run the CLI's ``main`` in-process (fast); the
``test_subprocess_*`` ones run ``python -m shoprank data validate`` to check the real exit status
and that no traceback reaches the terminal.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from shoprank.cli import main
from shoprank.data import validate as V
from shoprank.data.sources import rawtext

HD = "id,product_uid,product_title,search_term,relevance\n"
GOOD = HD + "1,100,Hinge,door hinge,3\n2,101,Nail,nail,2\n"
BIG = HD + "".join(f"{i},{100 + i},Item {i} {'x' * 50},q{i},2\n" for i in range(2000))


def _zip(members: dict[str, str | bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _patch_central(data: bytes, offset: int, value: int) -> bytes:
    """A zip with one 2-byte field of its first central-directory entry set (8: flags, 10: method)."""
    i = data.index(b"PK\x01\x02") + offset
    return data[:i] + struct.pack("<H", value) + data[i + 2 :]


def _flip(data: bytes, start: int, stop: int) -> bytes:
    """``data`` with the bytes in [start, stop) scrambled (corrupt compressed data, intact headers)."""
    out = bytearray(data)
    for i in range(start, stop):
        out[i] ^= 0x5A
    return bytes(out)


def _xml(n: int = 300) -> str:
    item = "<product><sku>{i}</sku><name>Item {i} " + "x" * 200 + "</name><regularPrice>1</regularPrice></product>"
    return "<products>" + "".join(item.format(i=i) for i in range(n)) + "</products>"


def _lol() -> str:
    ents = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{k} "{("&lol" + (str(k - 1) if k > 2 else "") + ";") * 10}">' for k in range(2, 10)
    )
    doc = "<products><product><sku>1</sku><name>&lol9;</name></product></products>"
    return f'<?xml version="1.0"?><!DOCTYPE l [{ents}]>{doc}'


def _validate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict | None, str]:
    """(exit status, the JSON summary when it succeeded, stderr)."""
    rc = main(["data", "validate", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("shoprank: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- refused files: exit 2, one line

# (id, file name, content, format, extra options, words the error line must hold)
Content = str | bytes | Callable[[Path], Path]
REFUSED: list[tuple[str, str, Content, str, list[str], list[str]]] = [
    ("xml-zip-corrupt-data", "p.xml.zip", _flip(_zip({"p.xml": _xml()}), 60, 120), "bestbuy-products", [],
     ["corrupt or truncated zip archive", "decompressing"]),
    ("xml-zip-bad-crc", "p.xml.zip", _flip(_zip({"p.xml": _xml()}, zipfile.ZIP_STORED), 100, 101), "bestbuy-products",
     [], ["corrupt or truncated zip archive", "CRC"]),
    ("xml-zip-truncated", "p.xml.zip", _zip({"p.xml": _xml()})[:200], "bestbuy-products", [],
     ["corrupt or truncated zip archive"]),
    ("xml-zip-empty", "p.xml.zip", _zip({}), "bestbuy-products", [], ["zip archive is empty"]),
    ("xml-zip-wrong-member", "p.xml.zip", _zip({"p.csv": GOOD}), "bestbuy-products", [],
     ["holds no .xml file", "p.csv"]),
    ("xml-zip-binary-member", "p.xml.zip", _zip({"p.xml": b"\x00\x01binary"}), "bestbuy-products", [],
     ["unreadable product XML", "'p.xml'"]),
    ("xml-gzip-truncated", "p.xml.gz", gzip.compress(_xml().encode())[:100], "bestbuy-products", [],
     ["corrupt or truncated gzip archive"]),
    ("xml-billion-laughs", "p.xml", _lol(), "bestbuy-products", [], ["unreadable product XML", "amplification"]),
    ("xml-external-entity", "p.xml",
     '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     "<products><product><sku>1</sku><name>&x;</name></product></products>",
     "bestbuy-products", [], ["unreadable product XML", "undefined entity"]),
    ("csv-zip-corrupt-data", "train.csv.zip", _flip(_zip({"train.csv": BIG}), 80, 200), "homedepot", [],
     ["corrupt or truncated zip archive", "'train.csv'"]),
    ("csv-zip-truncated", "train.csv.zip", _zip({"train.csv": BIG})[:500], "homedepot", [],
     ["corrupt or truncated zip archive"]),
    ("csv-gzip-truncated", "train.csv.gz", gzip.compress(BIG.encode())[:300], "homedepot", [],
     ["corrupt or truncated gzip archive", "end-of-stream"]),
    ("csv-gzip-corrupt-data", "train.csv.gz", _flip(gzip.compress(BIG.encode()), 40, 90), "homedepot", [],
     ["corrupt or truncated gzip archive"]),
    ("csv-xz-truncated", "train.csv.xz", lzma.compress(BIG.encode())[:200], "homedepot", [],
     ["corrupt or truncated xz archive"]),
    ("csv-gzip-empty", "train.csv.gz", gzip.compress(b""), "homedepot", [], ["empty after decompressing"]),
    ("csv-zip-empty", "train.csv.zip", _zip({}), "homedepot", [], ["zip archive is empty"]),
    ("csv-zip-wrong-member", "train.csv.zip", _zip({"img.png": b"\x89PNG\r\n"}), "homedepot", [],
     ["holds no .csv/.tsv/.txt file", "img.png"]),
    ("csv-zip-two-members", "data.zip", _zip({"a.csv": GOOD, "b.csv": GOOD}), "homedepot", [],
     ["holds 2 data files", "'a.csv', 'b.csv'"]),
    ("csv-zip-hostile-member-name", "train.csv.zip", _zip({"evil\nname" + "x" * 5000 + ".png": b"x"}), "homedepot", [],
     ["holds no .csv/.tsv/.txt file", "'evil\\nnamexxx", "...'"]),
    ("csv-zip-encrypted", "train.csv.zip", _patch_central(_zip({"train.csv": GOOD}), 8, 0x1), "homedepot", [],
     ["encrypted zip member 'train.csv'"]),
    ("csv-zip-unknown-method", "train.csv.zip", _patch_central(_zip({"train.csv": GOOD}), 10, 99), "homedepot", [],
     ["unsupported compression method"]),
    ("csv-zip-in-zip", "data.zip", _zip({"inner.csv": _zip({"a.csv": GOOD})}), "homedepot", [],
     ["zip archive inside a zip archive"]),
    ("csv-zstd", "train.csv.zst", b"\x28\xb5\x2f\xfd" + b"junk" * 10, "homedepot", [], ["a zstd archive"]),
    ("csv-is-parquet", "train.csv", b"PAR1" + b"junk" * 10 + b"PAR1", "homedepot", [], ["a parquet file"]),
    ("csv-binary-garbage", "train.csv", bytes(range(256)) * 10, "homedepot", [], ["not a text file (NUL bytes)"]),
    ("csv-utf16-no-bom", "train.csv", (HD + "1,100,Caf\xe9,cafe,3\n").encode("utf-16-le"), "homedepot", [],
     ["not a text file", "--encoding utf-16-le"]),
    ("csv-latin1-forced-utf8", "train.csv", (HD + "1,100,Caf\xe9,cafe,3\n").encode("latin-1"), "homedepot",
     ["--encoding", "utf-8"], ["not valid UTF-8 at byte"]),
    ("csv-utf16-declared-latin1", "train.csv", (HD + "1,100,x,y,3\n").encode("utf-16"), "homedepot",
     ["--encoding", "latin-1"], ["NUL characters after decoding as latin-1"]),
    ("csv-unknown-encoding", "train.csv", GOOD, "homedepot", ["--encoding", "klingon"],
     ["unknown encoding 'klingon'"]),
    ("csv-duplicate-header", "train.csv", HD.rstrip("\n") + ",relevance\n1,100,a,b,3,1\n", "homedepot", [],
     ["duplicate column 'relevance'", "columns 5 and 6"]),
    ("csv-duplicate-header-spaced", "train.csv", "id, product_uid ,product_title,search_term,relevance,product_uid\n"
     "1,100,a,b,3,1\n", "homedepot", [], ["duplicate column 'product_uid'", "columns 2 and 6"]),
    ("tsv-duplicate-header", "query.csv", "query_id\tquery\tquery\n1\tchair\tchair\n", "wands", [],
     ["duplicate column 'query'"]),
    ("csv-empty", "train.csv", "", "homedepot", [], ["empty file"]),
    ("csv-blank-lines-only", "train.csv", "\n\r\n  \n", "homedepot", [], ["empty file"]),
    ("csv-header-only", "train.csv", HD, "homedepot", [], ["no data rows (header only)"]),
    ("csv-header-unclosed-quote", "train.csv", '"' + HD + "1,2,3,4,5\n", "homedepot", [],
     ["header line has an unclosed quote"]),
    ("csv-missing-column", "train.csv", "id,product_uid,product_title,search_term\n1,2,t,q\n", "homedepot", [],
     ["missing required column 'relevance'"]),
    ("csv-wrong-separator", "train.csv", GOOD.replace(",", ";"), "homedepot", [], ["is the separator ';'?"]),
    ("directory-without-file", "folder", lambda p: (p.mkdir(), p)[1], "homedepot", [],
     ["no relevance.csv or train.csv in this folder"]),
    ("device-not-file", "zero", lambda _p: Path("/dev/zero"), "homedepot", [], ["not a regular file"]),
    ("missing-file", "nope.csv", lambda p: p, "fashion", [], ["file not found"]),
    ("parquet-corrupt", "catalogue.parquet", b"PAR1garbagePAR1", "canonical", [], ["unreadable parquet"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "fmt", "extra", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: Content, fmt: str, extra: list[str],
    words: list[str],
) -> None:  # fmt: skip
    path = tmp_path / name
    if callable(content):
        path = content(path)
    else:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    rc, _, err = _validate(capsys, path, "--format", fmt, *extra)
    line = _one_error_line(err)
    assert rc == 2, err
    if not words[0].startswith("unknown encoding"):
        assert str(path) in line, line
    for w in words:
        assert w in line, (w, line)


def test_decompression_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compressed file inflating past the limit is refused (a bomb is not inflated whole)."""
    monkeypatch.setattr(rawtext, "MAX_DECOMPRESSED_BYTES", 50_000)
    for name, data in (("bomb.csv.gz", gzip.compress(BIG.encode())), ("bomb.csv.bz2", bz2.compress(BIG.encode()))):
        path = tmp_path / name
        path.write_bytes(data)
        rc, _, err = _validate(capsys, path, "--format", "homedepot")
        assert rc == 2 and "over 50,000 bytes (the limit)" in _one_error_line(err)
    path = tmp_path / "bomb.zip"
    path.write_bytes(_zip({"train.csv": BIG}))
    rc, _, err = _validate(capsys, path, "--format", "homedepot")
    assert rc == 2 and "over the limit" in _one_error_line(err)


# ----------------------------------------------------------------------------- accepted files: exit 0, quarantine


def _ok(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> dict:
    rc, summary, err = _validate(capsys, path, *argv)
    assert rc == 0 and summary is not None, err
    return summary


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _quarantine(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[dict, pl.DataFrame]:
    q = path.parent / "q.csv"
    summary = _ok(capsys, path, *argv, "--quarantine-out", str(q))
    return summary, pl.read_csv(q) if q.exists() else pl.DataFrame()


def test_unclosed_quote_swallowing_lines_is_quarantined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: a quote left open would merge three lines into one kept row."""
    rows = ['1,100,"Bracket,angle,3', "2,101,Hinge,door hinge,3", '3,102,Nail",nail,2', "4,103,Screw,screw,1"]
    path = _write(tmp_path, "hd.csv", HD + "\n".join(rows) + "\n")
    summary, q = _quarantine(capsys, path, "--format", "homedepot", "--out", str(tmp_path / "out"))
    assert summary["rows_read"] == 4 and summary["kept"]["judgements"] == 3
    assert summary["quarantined_by_reason"] == {V.UNCLOSED_QUOTE: 1}
    assert q["row"].to_list() == [1] and q["raw"][0] == '1,100,"Bracket,angle,3'
    titles = pl.read_parquet(tmp_path / "out" / "catalogue.parquet")["title"].to_list()
    assert titles == ["Hinge", 'Nail"', "Screw"]  # nothing merged; each later line is its own row
    assert not any("\n" in t for t in titles)


@pytest.mark.parametrize(
    ("rows", "kept", "bad_row"),
    [
        (['1,100,"Bracket,angle,3', '3,102,Nail",nail,2', "4,103,Ok,ok,1"], 2, 1),  # closes on the next line
        (["1,100,Ok,ok,1", '2,100,"Bracket,angle,3', "3,101,Hinge,door hinge,3", "4,102,Nail,nail,2"], 3, 2),  # never
        (["1,100,Ok,ok,1", '2,100,Bracket,angle,"3'], 1, 2),  # at the end of the file, no line break
        (['1,100,"' + "x," * 600_000, "2,101,Hinge,door hinge,3"], 1, 1),  # open past MAX_RECORD_BYTES
    ],
    ids=["closes-later", "never-closes", "at-eof", "over-record-limit"],
)
def test_unclosed_quote_variants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str], kept: int, bad_row: int
) -> None:
    path = _write(tmp_path, "hd.csv", HD + "\n".join(rows) + ("\n" if not rows[-1].endswith('"3') else ""))
    summary, q = _quarantine(capsys, path, "--format", "homedepot")
    assert summary["kept"]["judgements"] == kept
    assert summary["quarantined_by_reason"] == {V.UNCLOSED_QUOTE: 1}
    assert q["row"].to_list() == [bad_row]


def test_genuine_multiline_values_are_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A quoted line break whose lines are not records of their own is a value, not an unclosed quote."""
    path = _write(
        tmp_path, "queries.csv", 'query_id,text,intent\n"q\n1",hello,\n2,"two\nline text",chairs\n3,"x,y",sofas\n4,5\n'
    )
    summary, q = _quarantine(capsys, path, "--format", "canonical", "--out", str(tmp_path / "out"))
    assert summary["kept"] == {"queries": 3} and summary["quarantined_by_reason"] == {V.WRONG_FIELD_COUNT: 1}
    assert q["row"].to_list() == [4]
    texts = pl.read_parquet(tmp_path / "out" / "queries.parquet")["text"].to_list()
    assert texts == ["hello", "two\nline text", "x,y"]


def test_huge_record_and_nul_quarantined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filler = "".join(f"{i},{100 + i},T{i},q{i},1\n" for i in range(2, 5000))  # keeps the NUL past the binary check
    huge = "9998,1," + "x" * (3 << 20) + ",q,1\n"  # one 3 MiB field
    wide = "9997," + "y," * (600_000) + "1\n"  # 1.2 MB of fields: too long, and the wrong field count
    content = HD + "1,100,Ok,ok,1\n" + filler + huge + "9999,1,T\x00x,q,1\n" + wide
    summary, q = _quarantine(capsys, _write(tmp_path, "hd.csv", content), "--format", "homedepot")
    assert summary["rows_read"] == 5002 and summary["kept"]["judgements"] == 4999
    assert summary["quarantined_by_reason"] == {V.RECORD_TOO_LONG: 2, V.NUL_CHARACTER: 1}
    assert q["row"].to_list() == [5000, 5001, 5002] and q["raw"].str.len_chars().max() <= 2000


@pytest.mark.parametrize(
    ("encoding", "option"),
    [("utf-16", "utf-16"), ("utf-16-le", "utf-16le"), ("utf-16-be", "utf_16_be"), ("utf-32", "utf-32"),
     ("utf-16", None), ("utf-32", None), ("utf-8-sig", None), ("cp1252", "cp1252")],
)  # fmt: skip
def test_encodings_decode_before_binary_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str, option: str | None
) -> None:
    """--encoding decodes first (UTF-16/32 are full of NUL bytes); without it, a byte-order mark decides."""
    text = HD + "1,100,Caf\xe9 \u20ac Table,cafe,3\n2,101,Nail,nail,2\n"
    data = text.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):
        data = ("\ufeff" + text).encode(encoding)  # a byte-order mark that the codec keeps: dropped after decoding
    path = _write(tmp_path, "hd.csv", data)
    argv = ["--format", "homedepot", "--out", str(tmp_path / "out")] + (["--encoding", option] if option else [])
    summary = _ok(capsys, path, *argv)
    assert summary["kept"]["judgements"] == 2 and summary["quarantined"] == 0
    cat = pl.read_parquet(tmp_path / "out" / "catalogue.parquet")
    assert cat["item_id"].to_list() == ["100", "101"] and cat["title"][0] == "Caf\xe9 \u20ac Table"


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("bom.csv", lambda s: "\ufeff".encode() + s.encode()),
        ("crlf.csv", lambda s: s.replace("\n", "\r\n").encode()),
        ("cr.csv", lambda s: s.replace("\n", "\r").encode()),
        ("no-final-newline.csv", lambda s: s.rstrip("\n").encode()),
        ("blank-lines.csv", lambda s: s.replace("\n", "\n\n").encode()),
        ("train.csv.gz", lambda s: gzip.compress(s.encode())),
        ("train.csv.bz2", lambda s: bz2.compress(s.encode())),
        ("train.csv.xz", lambda s: lzma.compress(s.encode())),
        ("train.csv.zip", lambda s: _zip({"__MACOSX/._train.csv": b"\x00", "train.csv": s})),
        ("folder/train.csv.gz", lambda s: gzip.compress(s.encode())),  # the folder is passed: found compressed
    ],
)
def test_benign_variants_load_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, transform: Callable[[str], bytes]
) -> None:
    (tmp_path / name).parent.mkdir(exist_ok=True)
    path = _write(tmp_path, name, transform(GOOD))
    summary = _ok(capsys, path.parent if name.startswith("folder/") else path, "--format", "homedepot")
    assert summary["kept"] == {"catalogue": 2, "queries": 2, "judgements": 2} and summary["quarantined"] == 0


def test_bestbuy_products_gzip_and_zip_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, data in (("p.xml.gz", gzip.compress(_xml(5).encode())), ("p.xml.zip", _zip({"p.xml": _xml(5)}))):
        summary = _ok(capsys, _write(tmp_path, name, data), "--format", "bestbuy-products")
        assert summary["kept"] == {"catalogue": 5}


# ----------------------------------------------------------------------------- the real command


def _run_cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPRANK_ID_SALT": "hostile-data-tests"}
    cmd = [sys.executable, "-m", "shoprank", "data", "validate", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_subprocess_corrupt_zip_and_utf16(tmp_path: Path) -> None:
    """The issue's reports through the real command line: exit status 2 and one line, or exit 0."""
    bad = _write(tmp_path, "products.xml.zip", _flip(_zip({"p.xml": _xml()}), 60, 120))
    proc = _run_cli(bad, "--format", "bestbuy-products")
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    line = _one_error_line(proc.stderr)
    assert str(bad) in line and "corrupt or truncated zip archive" in line
    dup = _write(tmp_path, "dup.csv", HD.rstrip("\n") + ",relevance\n1,100,a,b,3,1\n")
    proc = _run_cli(dup, "--format", "homedepot")
    assert proc.returncode == 2 and "duplicate column 'relevance'" in _one_error_line(proc.stderr)
    u16 = _write(tmp_path, "u16.csv", GOOD.encode("utf-16"))
    proc = _run_cli(u16, "--format", "homedepot", "--encoding", "utf-16", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kept"]["judgements"] == 2
