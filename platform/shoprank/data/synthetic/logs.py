"""Synthetic logs: position-biased search events and seasonal transactions (with returns and anonymous buyers)."""

from __future__ import annotations

import numpy as np
import polars as pl

from shoprank.data.schemas import SEASONS
from shoprank.data.synthetic.catalogue import ItemCore, item_ids, seeded_rng
from shoprank.data.synthetic.vocabulary import BRANDS, Taxonomy
from shoprank.data.validate import conform
from shoprank.hashing import hash_id

YEAR = 2024  # every synthetic timestamp falls in this year

COUNTRIES = [
    "United Kingdom",
    "Germany",
    "France",
    "Netherlands",
    "Spain",
    "Ireland",
    "Belgium",
    "Sweden",
    "Italy",
    "Norway",
]
COUNTRY_WEIGHTS = np.array([0.55, 0.1, 0.08, 0.06, 0.05, 0.05, 0.03, 0.03, 0.03, 0.02])

# Month weights (Jan..Dec) of demand for items of each season; a November/December holiday
# bump applies to everything.
_MONTH_CURVES = {
    "winter": [3.0, 2.0, 0.8, 0.3, 0.2, 0.1, 0.1, 0.2, 0.4, 1.0, 2.2, 3.2],
    "summer": [0.2, 0.2, 0.5, 1.0, 2.0, 3.0, 3.0, 2.2, 0.8, 0.3, 0.2, 0.3],
    "spring": [0.4, 0.8, 2.2, 3.0, 2.4, 1.0, 0.5, 0.4, 0.4, 0.3, 0.3, 0.4],
    "fall": [0.3, 0.3, 0.4, 0.4, 0.5, 0.6, 1.0, 2.0, 3.0, 2.8, 1.5, 0.6],
    "all": [1.0] * 12,
}
_HOLIDAY = np.array([1.0] * 10 + [1.4, 1.6])


def _hashed(prefix: str, ids: np.ndarray, salt: str) -> pl.Series:
    uniq, inv = np.unique(ids, return_inverse=True)
    table = np.array([hash_id(f"{prefix}{u}", salt) for u in uniq], dtype=object)
    return pl.Series(table[inv].astype(str), dtype=pl.Utf8)


def _year_timestamps(rng: np.random.Generator, n: int, months: np.ndarray | None = None) -> np.ndarray:
    """Microsecond timestamps in YEAR; within ``months`` (0-11) when given."""
    start = np.datetime64(f"{YEAR}-01-01T00:00:00", "us")
    if months is None:
        months = rng.integers(0, 12, n)
    month_start = np.array(
        [np.datetime64(f"{YEAR}-{m + 1:02d}-01", "us") for m in range(12)] + [np.datetime64(f"{YEAR + 1}-01-01", "us")]
    )
    lo = month_start[months]
    span = (month_start[months + 1] - lo).astype(np.int64)
    offset = (rng.random(n) * span).astype(np.int64)
    return (lo + offset.astype("timedelta64[us]")).astype("datetime64[us]") if n else np.array([], dtype=start.dtype)


def click_log(
    seed: int, texts: np.ndarray, shown: np.ndarray, shown_labels: np.ndarray, n_sessions: int, salt: str
) -> pl.DataFrame:
    """Impressions of 10 results per session, position-biased clicks, some purchases."""
    rng = seeded_rng(seed, 3)
    n_queries = shown.shape[0]
    qpop = 1.0 / np.arange(1, n_queries + 1) ** 0.9  # Zipf over queries
    qpop = qpop[rng.permutation(n_queries)]
    sess_q = rng.choice(n_queries, size=n_sessions, p=qpop / qpop.sum())
    n_users = max(50, n_sessions // 4)
    sess_user = rng.integers(0, n_users, n_sessions)
    sess_time = _year_timestamps(rng, n_sessions)
    items = shown[sess_q]  # [S, 10]
    labels = shown_labels[sess_q].astype(int)
    pos = np.arange(1, 11)
    examined = rng.random(items.shape) < (1.0 / pos)[None, :]
    p_click = np.array([0.04, 0.2, 0.5, 0.8])[labels]
    clicked = examined & (rng.random(items.shape) < p_click)
    bought = clicked & (rng.random(items.shape) < 0.08 * labels)
    second = np.timedelta64(1_000_000, "us")
    parts = []
    for kind, mask, delay in (
        ("impression", np.ones_like(clicked), 0),
        ("click", clicked, 5),
        ("purchase", bought, 120),
    ):
        s_idx, p_idx = np.nonzero(mask)
        ts = sess_time[s_idx] + (delay * second) + (p_idx * second)
        parts.append(
            pl.DataFrame(
                {
                    "user_hash": _hashed("user", sess_user[s_idx], salt),
                    "query": texts[sess_q[s_idx]].astype(str),
                    "item_id": item_ids(items[s_idx, p_idx]),
                    "event_type": kind,
                    "timestamp": ts,
                    "position": (p_idx + 1).astype(np.int32),
                    "s": s_idx,
                }
            )
        )
    df = pl.concat(parts).sort(["timestamp", "s", "position"])
    return conform(df, "events")


def transaction_log(tax: Taxonomy, core: ItemCore, seed: int, n_tx: int, salt: str) -> pl.DataFrame:
    rng = seeded_rng(seed, 4)
    n_items = len(core)
    w = core.popularity + 1.0
    item = rng.choice(n_items, size=n_tx, p=w / w.sum())
    curves = np.array([_MONTH_CURVES[s] for s in SEASONS]) * _HOLIDAY[None, :]
    cdf = np.cumsum(curves / curves.sum(axis=1, keepdims=True), axis=1)
    season = core.season[item].astype(int)
    u = rng.random(n_tx)
    month = np.minimum((u[:, None] > cdf[season]).sum(axis=1), 11)
    ts = _year_timestamps(rng, n_tx, month)
    qty = rng.geometric(0.45, n_tx).astype(np.int64)
    returns = rng.random(n_tx) < 0.03
    qty = np.where(returns, -qty, qty)
    customers = rng.integers(0, max(100, n_tx // 8), n_tx)
    cust_hash = _hashed("customer", customers, salt)
    anonymous = rng.random(n_tx) < 0.05
    df = pl.DataFrame(
        {
            "item": item,
            "quantity": qty,
            "unit_price": core.price[item],
            "timestamp": ts,
            "customer_hash": cust_hash,
            "country": np.array(COUNTRIES, dtype=object)[rng.choice(len(COUNTRIES), n_tx, p=COUNTRY_WEIGHTS)].astype(
                str
            ),
        }
    ).with_columns(pl.when(pl.Series(anonymous)).then(None).otherwise(pl.col("customer_hash")).alias("customer_hash"))
    return df.sort("timestamp")


def titles_for(tax: Taxonomy, core: ItemCore, idx: np.ndarray) -> np.ndarray:
    """Short transaction descriptions (brand + type), like a till receipt."""
    return (np.array(BRANDS, dtype=object)[core.brand[idx]] + " " + tax.type_name[core.type_id[idx]]).astype(str)
