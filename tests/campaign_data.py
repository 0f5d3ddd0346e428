"""Small canonical catalogues for the campaign tests (synthetic, and a slice of the fashion styles)."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

from shoprank.data.schemas import CATALOGUE

WINTER = ["wool coat", "down jacket", "snow boots", "knit scarf", "thermal gloves", "fleece sweater"]
SUMMER = ["linen shorts", "beach sandals", "swim trunks", "cotton t-shirt", "sun hat", "sunglasses"]
OTHER = ["kids toy train", "board game", "coffee mug", "desk lamp", "notebook", "phone case"]


def synthetic_catalogue(n: int, seed: int = 0) -> pl.DataFrame:
    """n canonical catalogue rows with winter, summer and all-season items."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 3
        noun = rng.choice((WINTER, SUMMER, OTHER)[kind])
        cat = ("Apparel > Outerwear", "Apparel > Summer", "Home > Gifts")[kind]
        rows.append(
            {
                "item_id": f"SKU{i:06d}",
                "title": f"{rng.choice(['Classic', 'Premium', 'Everyday'])} {noun} {i}",
                "description": f"A {noun} for everyone.",
                "category_path": cat,
                "attributes": "{}",
                "price": round(rng.uniform(5, 150), 2),
                "rating": round(rng.uniform(1, 5), 1),
                "season": ("winter", "summer", "all")[kind],
                "in_stock": rng.random() > 0.1,
                "popularity": float(rng.randint(0, 500)),
            }
        )
    return pl.DataFrame(rows, schema=CATALOGUE)


def fashion_catalogue(styles_csv: Path, n: int, seed: int = 0) -> pl.DataFrame:
    """A deterministic sample of n Myntra styles (Winter and Summer apparel) as a canonical catalogue."""
    raw = pl.read_csv(styles_csv, infer_schema=False, truncate_ragged_lines=True)
    raw = raw.filter(pl.col("season").is_in(["Winter", "Summer"]) & (pl.col("masterCategory") == "Apparel"))
    raw = raw.sort("id").sample(n=min(n, raw.height), seed=seed, shuffle=True)
    return raw.select(
        pl.col("id").alias("item_id"),
        pl.col("productDisplayName").alias("title"),
        pl.lit("").alias("description"),
        pl.concat_str(["masterCategory", "subCategory", "articleType"], separator=" > ").alias("category_path"),
        pl.lit("{}").alias("attributes"),
        pl.lit(None, dtype=pl.Float64).alias("price"),
        pl.lit(None, dtype=pl.Float64).alias("rating"),
        pl.col("season").str.to_lowercase().alias("season"),
        pl.lit(True).alias("in_stock"),
        pl.lit(0.0).alias("popularity"),
    )
