"""Files written so a reader or a crash never sees half of them: atomic file writes, an atomic
directory swap, and the SHA-256 of a file.

Files: :func:`atomic_path` yields a temp path in the target's directory; when the block ends
the temp file is fsynced and ``os.replace``\\ d onto the target (on an error it is removed), so
the target holds either its old or its new bytes, never a mix. ``atomic_write_bytes/text/json``
are the one-call forms.

Directories: :func:`swap_dir` puts a complete new directory at ``final_dir``. On Linux it uses
``renameat2(RENAME_EXCHANGE)``: at every instant ``final_dir`` names a complete directory, the
old one or the new one, and a crash right after the exchange leaves the new one in place and
the old one, complete, under the staging name (removed by the next step). Where the kernel or
filesystem cannot exchange (EINVAL/ENOSYS/EOPNOTSUPP, or not Linux) it falls back to renaming
the old directory aside and the new one in: then a crash between the two renames leaves
``final_dir`` missing for that instant, with the old directory complete at
``.<name>.old-*`` next to it. :func:`staged_dir` wraps staging, swap and cleanup.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``path`` to write; on success fsync it and replace ``path``.

    The temp file is created by ``mkstemp`` (mode 0600) unless ``mode`` is given; parent
    directories are created. On an exception the temp file is removed and ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: str | Path, obj: Any, *, mode: int | None = None, **dumps: Any) -> None:
    """Write ``json.dumps(obj, **dumps)`` to ``path`` atomically (same bytes as ``json.dumps``)."""
    atomic_write_text(path, json.dumps(obj, **dumps), mode=mode)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two existing paths; False where the platform cannot."""
    if not sys.platform.startswith("linux"):
        return False
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:  # glibc < 2.28
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def swap_dir(new_dir: str | Path, final_dir: str | Path) -> None:
    """Make the complete directory ``new_dir`` appear at ``final_dir`` atomically; delete the old one.

    Both must be on the same filesystem (stage ``new_dir`` next to ``final_dir``). See the
    module docstring for the guarantee and the fallback.
    """
    new_dir, final_dir = Path(new_dir), Path(final_dir)
    if not new_dir.is_dir():
        raise NotADirectoryError(f"{new_dir}: not a directory")
    if not final_dir.exists():
        try:
            os.rename(new_dir, final_dir)  # atomic; fails if final_dir appeared meanwhile
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if _exchange(new_dir, final_dir):
        shutil.rmtree(new_dir, ignore_errors=True)  # now the old directory
        return
    old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}-{time.time_ns()}")
    os.rename(final_dir, old)
    os.rename(new_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(final_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory next to ``final_dir``; on success :func:`swap_dir` it in.

    On an exception the staging directory is removed and ``final_dir`` is untouched. The
    staging directory is created with mode 0700 (``mkdtemp``) and given 0755 before the swap.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        swap_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
