"""Hashing: salted hashes of user and customer ids (so raw ids never reach frames or logs), and the
stable unit-interval hash that assigns groups to data splits."""

from __future__ import annotations

import hashlib
import os
from typing import Literal

DEFAULT_SALT_ENV = "SHOPRANK_ID_SALT"
_DEFAULT_SALT = "shoprank-default-salt"


def id_salt(salt: str | None = None) -> str:
    """The salt to use: explicit argument, else $SHOPRANK_ID_SALT, else a fixed default."""
    return salt if salt is not None else os.environ.get(DEFAULT_SALT_ENV, _DEFAULT_SALT)


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
