"""The format registry: ``load(path, fmt)`` dispatches to the per-dataset loader in :mod:`shoprank.data.sources`.

It returns a :class:`LoadResult`: canonical Polars frames (exactly the columns and dtypes of
:mod:`shoprank.data.schemas`), a quarantine frame of bad rows with their reasons, and the number
of rows read. Every field is read as text, then cast with vectorised Polars expressions; rows
whose casts fail are quarantined, never silently dropped.

Formats (``FORMATS``): homedepot, bestbuy-clicks, bestbuy-products, wands, fashion,
online-retail, instacart, canonical, served-log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoprank.data.sources.bestbuy import load_bestbuy_clicks, load_bestbuy_products
from shoprank.data.sources.canonical import detect_kind, load_canonical
from shoprank.data.sources.common import LoadResult, normalize_query, read_delimited, stable_query_id
from shoprank.data.sources.fashion import load_fashion
from shoprank.data.sources.homedepot import load_homedepot
from shoprank.data.sources.instacart import load_instacart
from shoprank.data.sources.online_retail import load_online_retail
from shoprank.data.sources.served_log import load_served_log
from shoprank.data.sources.wands import load_wands
from shoprank.errors import DataError

__all__ = [
    "FORMATS",
    "LoadResult",
    "Loader",
    "detect_kind",
    "load",
    "normalize_query",
    "read_delimited",
    "stable_query_id",
]

Loader = Callable[..., LoadResult]

FORMATS: dict[str, Loader] = {
    "homedepot": load_homedepot,
    "bestbuy-clicks": load_bestbuy_clicks,
    "bestbuy-products": load_bestbuy_products,
    "wands": load_wands,
    "fashion": load_fashion,
    "online-retail": load_online_retail,
    "instacart": load_instacart,
    "canonical": load_canonical,
    "served-log": load_served_log,
}


def load(path: str | Path, fmt: str, salt: str | None = None, **options: Any) -> LoadResult:
    """Load ``path`` in format ``fmt`` (see FORMATS) into canonical frames plus a quarantine."""
    name = fmt.strip().lower().replace("_", "-")
    if name not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    return FORMATS[name](p, salt=salt, **options)
