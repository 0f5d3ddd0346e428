"""A small deterministic synthetic catalogue in the canonical schema (tests, bench, demo fallback).

The project's own generator (``shoprank.data.synth``) is preferred when present; this one
only needs to give unique, readable titles with categories, prices, seasons and stock.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from shoprank.data.schemas import CATALOGUE

_CATS = {
    "Apparel > Footwear > Boots": (["boots", "ankle boots", "snow boots", "hiking boots"], "winter"),
    "Apparel > Footwear > Sandals": (["sandals", "flip flops", "slides"], "summer"),
    "Apparel > Outerwear > Coats": (["parka", "wool coat", "down jacket", "raincoat"], "winter"),
    "Apparel > Swimwear": (["swimsuit", "bikini", "swim shorts"], "summer"),
    "Home > Kitchen > Cookware": (["frying pan", "saucepan", "dutch oven", "wok"], "all"),
    "Home > Garden > Tools": (["garden hose", "rake", "pruning shears", "lawn mower"], "spring"),
    "Electronics > Audio": (["headphones", "earbuds", "bluetooth speaker", "soundbar"], "all"),
    "Toys > Outdoor": (["sled", "kite", "water gun", "frisbee"], "all"),
}
_ADJ = ["classic", "waterproof", "lightweight", "premium", "vintage", "compact", "deluxe", "eco", "sport", "kids"]
_COL = ["black", "red", "blue", "green", "white", "grey", "brown", "yellow", "navy", "pink"]
_BRANDS = ["Acme", "Nordia", "Sunfield", "Polaris", "Kestrel", "Aurora", "Brightway", "Oakline"]


def synthetic_catalogue(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` items with unique titles, in the canonical CATALOGUE columns and dtypes."""
    rng = np.random.default_rng(seed)
    cats = list(_CATS)
    rows: dict[str, list] = {c: [] for c in CATALOGUE}
    for i in range(n):
        cat = cats[i % len(cats)]
        nouns, season = _CATS[cat]
        noun = nouns[(i // len(cats)) % len(nouns)]
        adj = _ADJ[(i // 7) % len(_ADJ)]
        col = _COL[(i // 3) % len(_COL)]
        brand = _BRANDS[(i // 11) % len(_BRANDS)]
        rows["item_id"].append(f"SKU{i:07d}")
        rows["title"].append(f"{brand} {adj} {col} {noun} {i}")
        rows["description"].append(f"A {adj} {noun} in {col} by {brand}.")
        rows["category_path"].append(cat)
        rows["attributes"].append(json.dumps({"colour": col}))
        rows["price"].append(None if i % 50 == 49 else float(np.round(rng.uniform(5, 300), 2)))
        rows["rating"].append(float(np.round(rng.uniform(1, 5), 1)))
        rows["season"].append(season)
        rows["in_stock"].append(bool(i % 5 != 0))
        rows["popularity"].append(float(rng.integers(0, 1000)))
    return pl.DataFrame(rows, schema=CATALOGUE)


def catalogue(n: int, seed: int = 0) -> pl.DataFrame:
    """The project's synthetic catalogue (``shoprank.data.synth``) when present, else :func:`synthetic_catalogue`."""
    try:
        from shoprank.data.synth import generate
    except ImportError:
        return synthetic_catalogue(n, seed)
    return generate(n, seed=seed)["catalogue"]


def cluster_centres(dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """``clusters`` random unit centres (fp32), the same for a given seed."""
    c = np.random.default_rng([seed, 0xC0]).standard_normal((clusters, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def clustered_chunk(centres: np.ndarray, rows: int, seed: int, chunk: int, noise: float = 0.05) -> np.ndarray:
    """Chunk ``chunk`` of a clustered unit-vector set: each row a random centre plus Gaussian noise,
    normalised (fp32; deterministic per ``(seed, chunk)``, so a set is generated a chunk at a time)."""
    rng = np.random.default_rng([seed, chunk])
    x = centres[rng.integers(0, centres.shape[0], rows)]
    x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(n: int, dim: int = 384, clusters: int = 64, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """``n`` clustered unit vectors in one array (small sets: tests)."""
    return clustered_chunk(cluster_centres(dim, clusters, seed), n, seed, 0, noise)
