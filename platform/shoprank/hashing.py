"""Hashing: salted hashes of user and customer ids (so raw ids never reach frames or logs), and the
stable unit-interval hash that assigns groups to data splits.

The salt (see docs/privacy.md): the ``salt`` argument, else ``$SHOPRANK_ID_SALT``, else the contents
of the file named by ``$SHOPRANK_ID_SALT_FILE`` (owner-only: mode 0600 or 0400), else a public
default. Hashes under the public default are reversible for guessable ids by anyone with the code,
so serving refuses it (:func:`require_salt`) unless the caller opted in (the demo, tests:
``allow_default_salt`` / ``$SHOPRANK_INSECURE_DEFAULT_SALT=1``), and every process that falls back
to it logs a warning once. :func:`salt_id` names a salt without revealing it, for rotation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from typing import Literal

from shoprank.errors import ConfigError

log = logging.getLogger("shoprank.hashing")

DEFAULT_SALT_ENV = "SHOPRANK_ID_SALT"
SALT_FILE_ENV = "SHOPRANK_ID_SALT_FILE"
INSECURE_SALT_ENV = "SHOPRANK_INSECURE_DEFAULT_SALT"  # "1": the explicit opt-in to the public default
_DEFAULT_SALT = "shoprank-default-salt"
DEFAULT_SALT_ID = "default"
_HOW = f"set ${DEFAULT_SALT_ENV}, or ${SALT_FILE_ENV} to an owner-only (chmod 600) file; `shoprank salt new` makes one"
RISK = "user-id hashes use the PUBLIC default salt: anyone with the code can reverse the hash of a guessable id"
_warned = False
_file_cache: dict[str, tuple[object, str]] = {}


def owner_only_secret(path: str, what: str) -> str:
    """The stripped text of a secret file that only its owner can read (else a one-line ConfigError)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path}: not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{what} {path} is readable or writable by group/others (mode {stat.S_IMODE(st.st_mode):04o}): "
                f"chmod 600 {path}"
            )
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if not text:
        raise ConfigError(f"{what} {path} is empty")
    return text


def configured_salt() -> tuple[str, str] | None:
    """``(salt, source)`` from the environment (``$SHOPRANK_ID_SALT``, else ``$SHOPRANK_ID_SALT_FILE``), or None."""
    if os.environ.get(DEFAULT_SALT_ENV, "").strip():  # stripped like a salt file (a Secret may end in "\n")
        return os.environ[DEFAULT_SALT_ENV].strip(), f"${DEFAULT_SALT_ENV}"
    path = os.environ.get(SALT_FILE_ENV)
    if not path:
        return None
    try:  # read once per version of the file (hash_id runs per request)
        st = os.stat(path)
        key = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)
    except OSError:
        key = None
    cached = _file_cache.get(path)
    if key is None or cached is None or cached[0] != key:
        cached = (key, owner_only_secret(path, f"salt file (${SALT_FILE_ENV})"))
        _file_cache[path] = cached
    return cached[1], path


def id_salt(salt: str | None = None) -> str:
    """The salt to use: explicit argument, else the configured one, else the public default (logged once)."""
    global _warned
    if salt is not None:
        return salt
    found = configured_salt()
    if found is not None:
        return found[0]
    if not _warned:
        _warned = True
        log.warning("%s (%s)", RISK, _HOW)
    return _DEFAULT_SALT


def salt_id(salt: str | None = None) -> str:
    """A short public name of a salt (``"default"`` for the public one, else ``s`` + 8 hex digits of
    a hash of it): record it next to stored hashes to know which salt made them."""
    s = id_salt(salt)
    if s == _DEFAULT_SALT:
        return DEFAULT_SALT_ID
    return "s" + hashlib.sha256(f"shoprank-salt-id:{s}".encode()).hexdigest()[:8]


def default_salt_allowed() -> bool:
    """Whether this process's environment opts in to the public default salt."""
    return os.environ.get(INSECURE_SALT_ENV, "").strip().lower() in ("1", "true", "yes")


def require_salt(allow_default: bool = False, who: str = "serving") -> str:
    """The salt id of the configured salt; with none configured, a ConfigError naming the risk and the
    fix, unless ``allow_default`` (or ``$SHOPRANK_INSECURE_DEFAULT_SALT=1``): then a loud warning."""
    if configured_salt() is not None:
        return salt_id()
    if not (allow_default or default_salt_allowed()):
        raise ConfigError(f"{who}: no user-id salt configured; {RISK}. {_HOW} (demo/tests: --insecure-default-salt)")
    log.warning("INSECURE: %s: %s (allowed explicitly; %s)", who, RISK, _HOW)
    return DEFAULT_SALT_ID


def allow_default_salt(who: str) -> None:
    """Opt this process and the Ray workers it starts in to the public default salt when none is
    configured (the demo, tests): sets ``$SHOPRANK_INSECURE_DEFAULT_SALT`` and warns loudly."""
    if configured_salt() is None:
        os.environ[INSECURE_SALT_ENV] = "1"
        require_salt(True, who)


def new_salt() -> str:
    """A fresh random salt (256 bits, hex)."""
    return secrets.token_hex(32)


def hash_id(raw: str | int | None, salt: str | None = None) -> str | None:
    """Return a 16-hex-digit salted SHA-256 of ``raw`` (None stays None)."""
    if raw is None:
        return None
    digest = hashlib.sha256(f"{id_salt(salt)}:{raw}".encode()).hexdigest()
    return digest[:16]


def unit_hash(key: str, seed: int, byteorder: Literal["big", "little"]) -> float:
    """A stable number in [0, 1) for ``key``: BLAKE2b-64 of ``"{seed}:{key}"`` read in ``byteorder``.

    Same across runs, machines and Python versions. The byte order is explicit because two
    split schemes use this hash with different orders (``shoprank.data.splits`` big-endian,
    ``shoprank.tasks.examples`` little-endian) and changing either would move every split.
    """
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, byteorder) / 2.0**64
