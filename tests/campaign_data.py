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


# Myntra's season label is the *collection* season: 98% of watches are "Winter", while sweaters
# and jackets are mostly "Fall". So the test slice is apparel that exists in both halves of the
# year, with Winter+Fall counted as the cold-season collections and Summer as the warm one.
SEASONAL_TYPES = ["Sweaters", "Sweatshirts", "Jackets", "Shorts", "Capris", "Dresses", "Skirts", "Track Pants"]


def fashion_catalogue(styles_csv: Path, n: int, seed: int = 0) -> pl.DataFrame:
    """A deterministic sample of n Myntra styles (via the data layer), season relabelled cold|summer."""
    from shoprank.data.loaders import load

    cat = load(styles_csv, "fashion")["catalogue"]
    cat = cat.filter(
        pl.col("category_path").str.split(" > ").list.last().is_in(SEASONAL_TYPES)
        & pl.col("season").is_in(["winter", "fall", "summer"])
    )
    cat = cat.sort("item_id").sample(n=min(n, cat.height), seed=seed, shuffle=True)
    return cat.with_columns(
        pl.when(pl.col("season") == "summer").then(pl.lit("summer")).otherwise(pl.lit("cold")).alias("season")
    )
