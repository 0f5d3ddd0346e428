"""Query text as the click counters key it: words, compact keys and character trigrams."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str | None) -> list[str]:
    """Lower-case alphanumeric runs, in order (repeats kept)."""
    return _TOKEN.findall((text or "").lower())


def normalize_query(text: str | None) -> str:
    return " ".join(tokenize(text))


def compact_query(text: str | None) -> str:
    """Lower-case alphanumerics only, so "Call of Duty" and "callofduty" meet."""
    return "".join(tokenize(text))


def query_trigrams(key: str) -> frozenset[str]:
    """Character trigrams of a compact query padded with one space each side."""
    padded = f" {key} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))
