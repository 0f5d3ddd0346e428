"""Salted hashing of user and customer ids, so raw ids never reach frames or logs."""

from __future__ import annotations

import hashlib
import os

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
