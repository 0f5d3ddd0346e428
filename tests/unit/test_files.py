"""shoprank.files: atomic file writes and the directory swap (no Ray)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from shoprank import files
from shoprank.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
    staged_dir,
    swap_dir,
)
from shoprank.hashing import unit_hash


class Crash(BaseException):
    """Stands for the process dying at that point (not an Exception: nothing may catch it)."""


def _make(d: Path, tag: str, n: int = 3) -> Path:
    d.mkdir(parents=True)
    for i in range(n):
        (d / f"f{i}.txt").write_text(f"{tag}-{i}")
    return d


def _complete(d: Path, tag: str, n: int = 3) -> bool:
    return sorted(p.name for p in d.iterdir()) == [f"f{i}.txt" for i in range(n)] and all(
        (d / f"f{i}.txt").read_text() == f"{tag}-{i}" for i in range(n)
    )


def test_atomic_writes_and_sha256(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b.bin"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(p, "héllo")
    assert p.read_bytes() == "héllo".encode()
    atomic_write_json(p, {"b": 1, "a": [1.5]}, indent=2, sort_keys=True)
    assert p.read_text() == json.dumps({"b": 1, "a": [1.5]}, indent=2, sort_keys=True)
    atomic_write_text(p, "x", mode=0o640)
    assert p.stat().st_mode & 0o777 == 0o640
    assert sha256_file(p) == hashlib.sha256(b"x").hexdigest()
    assert sorted(x.name for x in p.parent.iterdir()) == ["b.bin"]  # no temp file left


def test_atomic_path_failure_keeps_old_file(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_swap_dir_into_missing_and_existing(tmp_path: Path) -> None:
    final = tmp_path / "final"
    swap_dir(_make(tmp_path / "n1", "one"), final)
    assert _complete(final, "one") and not (tmp_path / "n1").exists()
    swap_dir(_make(tmp_path / "n2", "two", 2), final)
    assert _complete(final, "two", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # the old one is gone
    with pytest.raises(NotADirectoryError):
        swap_dir(tmp_path / "missing", final)


def test_staged_dir_commits_or_leaves_old(tmp_path: Path) -> None:
    final = _make(tmp_path / "final", "old")
    with pytest.raises(ValueError), staged_dir(final) as tmp:
        (tmp / "f0.txt").write_text("new-0")
        raise ValueError("build failed")
    assert _complete(final, "old") and sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    with staged_dir(final) as tmp:
        for i in range(3):
            (tmp / f"f{i}.txt").write_text(f"new-{i}")
    assert _complete(final, "new") and final.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="renameat2 is Linux-only")
def test_crash_after_exchange_leaves_new_complete_and_old_complete(tmp_path: Path, monkeypatch) -> None:
    final = _make(tmp_path / "final", "old")
    new = _make(tmp_path / "new", "new")

    def crash(*_a: object, **_k: object) -> None:
        raise Crash

    monkeypatch.setattr(shutil, "rmtree", crash)  # die between the exchange and the cleanup
    with pytest.raises(Crash):
        swap_dir(new, final)
    assert _complete(final, "new")
    assert _complete(new, "old")  # the old directory, complete, under the staging name


def test_crash_in_fallback_leaves_old_complete_aside(tmp_path: Path, monkeypatch) -> None:
    """Without RENAME_EXCHANGE: a crash between the two renames loses neither directory."""
    final = _make(tmp_path / "final", "old")
    new = _make(tmp_path / "new", "new")
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src: object, dst: object) -> None:
        calls.append((src, dst))
        if len(calls) == 2:
            raise Crash
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Crash):
        swap_dir(new, final)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".final.old-")]
    assert len(aside) == 1 and _complete(aside[0], "old") and _complete(new, "new")


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="renameat2 is Linux-only")
def test_swap_is_atomic_for_a_concurrent_reader(tmp_path: Path) -> None:
    """A reader polling FINAL never finds it missing while it is replaced over and over
    (rmtree-then-rename, or rename-aside, would show the gap)."""
    assert files._exchange(_make(tmp_path / "a", "a"), _make(tmp_path / "b", "b"))  # supported here
    assert _complete(tmp_path / "a", "b") and _complete(tmp_path / "b", "a")
    final = _make(tmp_path / "final", "v0", 1)
    stop = threading.Event()
    missing = []

    def reader() -> None:
        while not stop.is_set():
            if not os.path.isdir(final):
                missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(300):
            swap_dir(_make(tmp_path / f"n{i}", f"v{i + 1}", 1), final)
    finally:
        stop.set()
        t.join()
    assert not missing
    assert _complete(final, "v300", 1)


def test_unit_hash_byte_orders_are_the_two_split_schemes() -> None:
    """One function, both historical byte orders (the data and train splits must not move)."""
    digest = hashlib.blake2b(b"7:q-123", digest_size=8).digest()
    assert unit_hash("q-123", 7, "big") == int.from_bytes(digest, "big") / 2.0**64
    assert unit_hash("q-123", 7, "little") == int.from_bytes(digest, "little") / 2.0**64
    assert unit_hash("q-123", 7, "big") != unit_hash("q-123", 7, "little")
    assert 0.0 <= unit_hash("", 0, "big") < 1.0
