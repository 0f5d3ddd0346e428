"""The synthetic catalogue: per-item numeric cores drawn chunk by chunk, and their vectorised text.

Chunk k draws from its own generator seeded by (seed, k), so the output does not depend on how
many chunks are held in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.data.schemas import CATEGORY_SEP, SEASONS
from shoprank.data.synthetic.vocabulary import BRANDS, COLOURS, MATERIALS, SEASON_SENTENCES, SEASON_WORDS, Taxonomy
from shoprank.data.validate import conform

CHUNK = 100_000


@dataclass
class ItemCore:
    """The numeric core of every item (small: a few bytes per item, kept for all items)."""

    type_id: np.ndarray
    season: np.ndarray
    colour: np.ndarray
    brand: np.ndarray
    material: np.ndarray
    season_word: np.ndarray  # -1: title has no season word
    price: np.ndarray
    rating: np.ndarray  # NaN: unknown
    popularity: np.ndarray
    in_stock: np.ndarray

    def __len__(self) -> int:
        return len(self.type_id)


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def item_chunk(tax: Taxonomy, seed: int, chunk: int, n: int) -> ItemCore:
    rng = seeded_rng(seed, 1, chunk)
    # Types: mildly skewed (some types have far more products than others), fixed by the seed.
    type_weights = seeded_rng(seed, 0).gamma(2.0, 1.0, tax.n_types)
    type_id = rng.choice(tax.n_types, size=n, p=type_weights / type_weights.sum())
    home = tax.season[type_id]
    season = np.where(rng.random(n) < 0.8, home, rng.integers(0, len(SEASONS), n))
    season_word = np.where(rng.random(n) < 0.85, rng.integers(0, 8, n), -1)
    price = np.round(tax.price_median[type_id] * rng.lognormal(0.0, 0.45, n), 0) - 0.01
    price = np.maximum(price, 0.99)
    rating = np.clip(np.round(rng.normal(4.1, 0.55, n), 1), 1.0, 5.0)
    rating[rng.random(n) < 0.05] = np.nan
    popularity = np.floor(rng.pareto(1.1, n) * 10.0)  # heavy tail, Zipf-like
    return ItemCore(
        type_id=type_id.astype(np.int32),
        season=season.astype(np.int8),
        colour=rng.integers(0, len(COLOURS), n).astype(np.int16),
        brand=rng.integers(0, len(BRANDS), n).astype(np.int16),
        material=rng.integers(0, len(MATERIALS), n).astype(np.int16),
        season_word=season_word.astype(np.int8),
        price=price,
        rating=rating,
        popularity=popularity,
        in_stock=rng.random(n) < 0.92,
    )


def chunk_plan(n_items: int, chunk: int | None = None) -> list[tuple[int, int, int]]:
    """(chunk index, first item, size); chunk k draws from its own generator seeded by (seed, k)."""
    chunk = chunk or CHUNK
    return [(k, start, min(chunk, n_items - start)) for k, start in enumerate(range(0, n_items, chunk))]


def catalogue_frame(tax: Taxonomy, core: ItemCore, start: int) -> pl.DataFrame:
    """Vectorised text for one chunk of items."""
    n = len(core)
    season_names = np.array(SEASONS, dtype=object)[core.season]
    words = np.array([SEASON_WORDS[s] for s in SEASONS], dtype=object)  # 5 x 8
    sw = np.where(core.season_word >= 0, words[core.season.astype(int), np.maximum(core.season_word, 0)], "")
    df = pl.DataFrame(
        {
            "idx": np.arange(start, start + n, dtype=np.int64),
            "brand": np.array(BRANDS, dtype=object)[core.brand].astype(str),
            "sw": sw.astype(str),
            "colour": np.array(COLOURS, dtype=object)[core.colour].astype(str),
            "material": np.array(MATERIALS, dtype=object)[core.material].astype(str),
            "type": tax.type_name[core.type_id].astype(str),
            "department": tax.department[core.type_id].astype(str),
            "category": tax.category[core.type_id].astype(str),
            "season": season_names.astype(str),
            "sentence": np.array([SEASON_SENTENCES[s] for s in SEASONS], dtype=object)[core.season].astype(str),
            "price": core.price,
            "rating": core.rating,
            "popularity": core.popularity,
            "in_stock": core.in_stock,
        }
    )
    sw_part = pl.when(pl.col("sw") == "").then(pl.lit("")).otherwise(pl.col("sw") + " ")
    colour_cap = pl.col("colour").str.slice(0, 1).str.to_uppercase() + pl.col("colour").str.slice(1)
    out = df.select(
        pl.format("SKU{}", pl.col("idx").cast(pl.Utf8).str.zfill(7)).alias("item_id"),
        (pl.col("brand") + " " + sw_part + colour_cap + " " + pl.col("type")).alias("title"),
        pl.format(
            "{} {} in {} {}. {} Category: {}.",
            pl.col("brand"),
            pl.col("type").str.to_lowercase(),
            pl.col("colour"),
            pl.col("material"),
            pl.col("sentence"),
            pl.col("category").str.to_lowercase(),
        ).alias("description"),
        pl.concat_str(["department", "category", "type"], separator=CATEGORY_SEP).alias("category_path"),
        pl.struct(pl.col("brand"), pl.col("colour"), pl.col("material")).struct.json_encode().alias("attributes"),
        pl.col("price"),
        pl.when(pl.col("rating").is_nan()).then(None).otherwise(pl.col("rating")).alias("rating"),
        pl.col("season"),
        pl.col("in_stock"),
        pl.col("popularity"),
    )
    return conform(out, "catalogue")


def item_ids(idx: np.ndarray | pl.Series) -> pl.Series:
    """ "SKU0000042" style ids for item indexes."""
    s = pl.Series("i", idx, dtype=pl.Int64)
    return s.to_frame().select(pl.format("SKU{}", pl.col("i").cast(pl.Utf8).str.zfill(7))).to_series()


def concat_core(parts: list[ItemCore]) -> ItemCore:
    """One core for all items, from the per-chunk cores in order."""
    return ItemCore(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in ItemCore.__dataclass_fields__})
