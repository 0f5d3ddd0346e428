"""Deterministic, seeded synthetic shop: the embedded default data set.

``generate(n_items, seed)`` returns canonical frames in memory (small sizes);
``write_dataset(out_dir, n_items, seed)`` streams the catalogue to parquet chunk by chunk, so a
1M-item catalogue needs no more memory than one chunk of text plus a few numeric arrays.

What it models (so that models have something real to learn):

* a category hierarchy: 8 departments > 5 categories > 4 types ("Apparel > Outerwear > Parka");
* seasons: each type has a home season; titles and descriptions carry season words
  ("insulated", "linen", "beach") so the season is learnable from text;
* prices: lognormal around a per-category median; ratings; Zipf-like popularity; stock;
* queries with intents (intent = the "Department > Category" path of the target type);
* graded judgements 0..3 (3: type and attribute match, 2: type, 1: category, 0: other);
* position-biased click logs (examination probability 1/position, click given relevance);
* transactions whose monthly volume follows the season of the item (winter items peak in
  December/January, summer items in June/July, holiday bump in November/December).

Same seed and size -> identical output (chunk k uses its own generator seeded by (seed, k)).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from shoprank.data.loaders import stable_query_id
from shoprank.data.schemas import CATEGORY_SEP, SCHEMAS, SEASONS
from shoprank.data.validate import conform
from shoprank.hashing import hash_id, id_salt

DEFAULT_ITEMS = 10_000
CHUNK = 100_000
YEAR = 2024

# department -> category -> (price median, [(type, home season), ...])
TAXONOMY: dict[str, dict[str, tuple[float, list[tuple[str, str]]]]] = {
    "Apparel": {
        "Outerwear": (
            120.0,
            [("Parka", "winter"), ("Rain Jacket", "spring"), ("Windbreaker", "fall"), ("Puffer Vest", "winter")],
        ),
        "Tops": (
            30.0,
            [("T-Shirt", "summer"), ("Flannel Shirt", "fall"), ("Sweater", "winter"), ("Tank Top", "summer")],
        ),
        "Bottoms": (
            45.0,
            [("Shorts", "summer"), ("Jeans", "all"), ("Chinos", "spring"), ("Thermal Leggings", "winter")],
        ),
        "Swimwear": (
            35.0,
            [("Swim Trunks", "summer"), ("Bikini", "summer"), ("Rash Guard", "summer"), ("Cover-Up", "summer")],
        ),
        "Accessories": (20.0, [("Beanie", "winter"), ("Sun Hat", "summer"), ("Scarf", "fall"), ("Gloves", "winter")]),
    },
    "Footwear": {
        "Boots": (
            110.0,
            [("Snow Boots", "winter"), ("Rain Boots", "spring"), ("Hiking Boots", "fall"), ("Chelsea Boots", "fall")],
        ),
        "Sandals": (
            35.0,
            [
                ("Flip Flops", "summer"),
                ("Slide Sandals", "summer"),
                ("Sport Sandals", "summer"),
                ("Espadrilles", "spring"),
            ],
        ),
        "Sneakers": (
            80.0,
            [
                ("Running Shoes", "all"),
                ("Trail Runners", "spring"),
                ("Court Sneakers", "all"),
                ("Slip-On Sneakers", "summer"),
            ],
        ),
        "Slippers": (
            25.0,
            [
                ("Moccasin Slippers", "winter"),
                ("Fleece Slippers", "winter"),
                ("Scuff Slippers", "fall"),
                ("Bootie Slippers", "winter"),
            ],
        ),
        "Dress Shoes": (95.0, [("Oxfords", "all"), ("Loafers", "spring"), ("Pumps", "all"), ("Ankle Booties", "fall")]),
    },
    "Garden": {
        "Lawn Care": (
            60.0,
            [("Lawn Mower", "spring"), ("Grass Seed", "spring"), ("Leaf Blower", "fall"), ("Sprinkler", "summer")],
        ),
        "Planters": (
            25.0,
            [
                ("Raised Bed", "spring"),
                ("Hanging Basket", "spring"),
                ("Terracotta Pot", "spring"),
                ("Window Box", "summer"),
            ],
        ),
        "Outdoor Furniture": (
            180.0,
            [("Patio Chair", "summer"), ("Hammock", "summer"), ("Fire Pit", "fall"), ("Patio Umbrella", "summer")],
        ),
        "Grills": (
            220.0,
            [("Gas Grill", "summer"), ("Charcoal Grill", "summer"), ("Smoker", "summer"), ("Grill Cover", "all")],
        ),
        "Snow Removal": (
            90.0,
            [("Snow Shovel", "winter"), ("Snow Blower", "winter"), ("Ice Melt", "winter"), ("Roof Rake", "winter")],
        ),
    },
    "Home": {
        "Bedding": (
            70.0,
            [
                ("Down Comforter", "winter"),
                ("Linen Sheets", "summer"),
                ("Electric Blanket", "winter"),
                ("Quilt", "all"),
            ],
        ),
        "Decor": (
            35.0,
            [("Wreath", "winter"), ("Pumpkin Decor", "fall"), ("Table Runner", "all"), ("String Lights", "winter")],
        ),
        "Heating & Cooling": (
            95.0,
            [
                ("Space Heater", "winter"),
                ("Box Fan", "summer"),
                ("Air Conditioner", "summer"),
                ("Humidifier", "winter"),
            ],
        ),
        "Bath": (
            25.0,
            [("Bath Towel", "all"), ("Beach Towel", "summer"), ("Bath Robe", "winter"), ("Shower Curtain", "all")],
        ),
        "Storage": (
            40.0,
            [("Storage Bin", "all"), ("Shoe Rack", "all"), ("Garment Bag", "spring"), ("Toy Chest", "all")],
        ),
    },
    "Kitchen": {
        "Cookware": (60.0, [("Dutch Oven", "fall"), ("Frying Pan", "all"), ("Stock Pot", "winter"), ("Wok", "all")]),
        "Small Appliances": (
            85.0,
            [("Slow Cooker", "fall"), ("Ice Cream Maker", "summer"), ("Blender", "summer"), ("Coffee Maker", "all")],
        ),
        "Bakeware": (
            25.0,
            [("Cookie Sheet", "winter"), ("Pie Dish", "fall"), ("Cake Pan", "all"), ("Muffin Tin", "all")],
        ),
        "Drinkware": (
            18.0,
            [("Travel Mug", "winter"), ("Tumbler", "summer"), ("Pitcher", "summer"), ("Wine Glass", "all")],
        ),
        "Outdoor Dining": (
            30.0,
            [("Picnic Basket", "summer"), ("Cooler", "summer"), ("Melamine Plates", "summer"), ("Thermos", "winter")],
        ),
    },
    "Sports": {
        "Camping": (
            90.0,
            [("Tent", "summer"), ("Sleeping Bag", "fall"), ("Camp Stove", "summer"), ("Headlamp", "all")],
        ),
        "Winter Sports": (
            160.0,
            [("Ski Goggles", "winter"), ("Snowboard", "winter"), ("Sled", "winter"), ("Ice Skates", "winter")],
        ),
        "Water Sports": (
            120.0,
            [
                ("Kayak Paddle", "summer"),
                ("Snorkel Set", "summer"),
                ("Life Jacket", "summer"),
                ("Paddle Board", "summer"),
            ],
        ),
        "Fitness": (
            45.0,
            [("Yoga Mat", "all"), ("Dumbbells", "winter"), ("Jump Rope", "all"), ("Resistance Bands", "all")],
        ),
        "Cycling": (
            140.0,
            [("Bike Helmet", "spring"), ("Bike Lights", "fall"), ("Cycling Jersey", "summer"), ("Bike Lock", "all")],
        ),
    },
    "Toys": {
        "Outdoor Toys": (
            30.0,
            [("Water Gun", "summer"), ("Kite", "spring"), ("Sand Toys", "summer"), ("Snow Fort Kit", "winter")],
        ),
        "Building Sets": (
            45.0,
            [("Brick Set", "all"), ("Magnetic Tiles", "all"), ("Marble Run", "all"), ("Train Set", "winter")],
        ),
        "Games & Puzzles": (
            22.0,
            [("Jigsaw Puzzle", "winter"), ("Board Game", "winter"), ("Card Game", "all"), ("Trivia Game", "all")],
        ),
        "Dolls & Figures": (
            25.0,
            [("Fashion Doll", "all"), ("Action Figure", "all"), ("Plush Toy", "winter"), ("Dollhouse", "winter")],
        ),
        "Seasonal Toys": (
            20.0,
            [("Advent Calendar", "winter"), ("Easter Basket", "spring"), ("Costume", "fall"), ("Pool Float", "summer")],
        ),
    },
    "Electronics": {
        "Audio": (
            90.0,
            [("Bluetooth Speaker", "summer"), ("Headphones", "all"), ("Earbuds", "all"), ("Soundbar", "all")],
        ),
        "TV & Video": (
            450.0,
            [("Smart TV", "winter"), ("Projector", "summer"), ("Streaming Stick", "all"), ("TV Mount", "all")],
        ),
        "Cameras": (
            300.0,
            [("Action Camera", "summer"), ("Instant Camera", "summer"), ("Trail Camera", "fall"), ("Dash Cam", "all")],
        ),
        "Smart Home": (
            70.0,
            [
                ("Smart Thermostat", "winter"),
                ("Video Doorbell", "all"),
                ("Smart Plug", "all"),
                ("Robot Vacuum", "spring"),
            ],
        ),
        "Wearables": (
            180.0,
            [
                ("Fitness Tracker", "winter"),
                ("Smartwatch", "all"),
                ("Heated Gloves", "winter"),
                ("GPS Watch", "spring"),
            ],
        ),
    },
}

SEASON_WORDS: dict[str, list[str]] = {
    "winter": ["insulated", "thermal", "fleece-lined", "heated", "wool", "sherpa", "holiday", "frost-proof"],
    "summer": ["linen", "lightweight", "beach", "breathable", "mesh", "UV-protective", "quick-dry", "poolside"],
    "spring": ["floral", "rain-ready", "pastel", "water-resistant", "garden", "easter", "bloom", "packable"],
    "fall": ["flannel", "harvest", "corduroy", "layering", "plaid", "autumn", "cozy", "maple"],
    "all": ["classic", "everyday", "essential", "durable", "versatile", "modern", "premium", "compact"],
}
SEASON_SENTENCES: dict[str, str] = {
    "winter": "Built for cold weather, snow and the holiday season.",
    "summer": "Made for hot days, sun, the beach and vacations.",
    "spring": "Ready for spring showers, gardening and fresh starts.",
    "fall": "Perfect for crisp autumn days, back to school and harvest time.",
    "all": "A year-round favourite for every season.",
}
BRANDS = [
    "Northpeak",
    "Sunvale",
    "Brightwood",
    "Cedar & Co",
    "Urbanline",
    "Maple Lane",
    "Bluecrest",
    "Ironridge",
    "Seabreeze",
    "Foxglove",
    "Summit Gear",
    "Harbor Home",
    "Kindred",
    "Polar Trail",
    "Golden Hour",
    "Riverstone",
    "Oakhaven",
    "Nimbus",
    "Trailhead",
    "Willow & Pine",
    "Coastline",
    "Everest Co",
    "Lumen",
    "Juniper",
    "Redtail",
    "Sandpiper",
    "Frostline",
    "Meadowbrook",
    "Atlas",
    "Wildflower",
    "Stonebridge",
    "Halcyon",
]
COLOURS = [
    "black",
    "white",
    "navy",
    "red",
    "green",
    "grey",
    "blue",
    "brown",
    "pink",
    "yellow",
    "orange",
    "beige",
    "olive",
    "teal",
    "charcoal",
    "ivory",
]
MATERIALS = [
    "cotton",
    "polyester",
    "stainless steel",
    "bamboo",
    "recycled plastic",
    "leather",
    "canvas",
    "aluminium",
    "ceramic",
    "nylon",
    "oak",
    "silicone",
]
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


@dataclass(frozen=True)
class Taxonomy:
    """Flat arrays over the 160 types (index = type id)."""

    department: np.ndarray  # str
    category: np.ndarray
    type_name: np.ndarray
    season: np.ndarray  # home season index into SEASONS
    price_median: np.ndarray
    category_id: np.ndarray  # index of (department, category)

    @property
    def n_types(self) -> int:
        return len(self.type_name)

    def path(self, level: int = 3) -> np.ndarray:
        parts = [self.department, self.category, self.type_name][:level]
        return np.array([CATEGORY_SEP.join(p) for p in zip(*parts, strict=True)], dtype=object)


def taxonomy() -> Taxonomy:
    dep, cat, typ, sea, price, cid = [], [], [], [], [], []
    k = 0
    for d, cats in TAXONOMY.items():
        for c, (median, types) in cats.items():
            for t, s in types:
                dep.append(d)
                cat.append(c)
                typ.append(t)
                sea.append(SEASONS.index(s))
                price.append(median)
                cid.append(k)
            k += 1
    return Taxonomy(
        np.array(dep, dtype=object),
        np.array(cat, dtype=object),
        np.array(typ, dtype=object),
        np.array(sea),
        np.array(price),
        np.array(cid),
    )


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


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _item_chunk(tax: Taxonomy, seed: int, chunk: int, n: int) -> ItemCore:
    rng = _rng(seed, 1, chunk)
    # Types: mildly skewed (some types have far more products than others), fixed by the seed.
    type_weights = _rng(seed, 0).gamma(2.0, 1.0, tax.n_types)
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


def _chunks(n_items: int, chunk: int | None = None) -> list[tuple[int, int, int]]:
    """(chunk index, first item, size); chunk k draws from its own generator seeded by (seed, k)."""
    chunk = chunk or CHUNK
    return [(k, start, min(chunk, n_items - start)) for k, start in enumerate(range(0, n_items, chunk))]


def _catalogue_frame(tax: Taxonomy, core: ItemCore, start: int) -> pl.DataFrame:
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


def _queries_and_judgements(
    tax: Taxonomy, core: ItemCore, seed: int, n_queries: int
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Queries aimed at a type (sometimes with a season word or colour), candidates and graded labels.

    Returns (queries, judgements, shown items [n_queries, 10], their labels [n_queries, 10]).
    """
    rng = _rng(seed, 2)
    n_items = len(core)
    order = np.argsort(core.type_id, kind="stable")
    counts = np.bincount(core.type_id, minlength=tax.n_types)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts > 0)
    weights = counts[present].astype(float) ** 0.7
    target = present[rng.choice(len(present), size=n_queries, p=weights / weights.sum())]
    q_season = np.where(rng.random(n_queries) < 0.4, tax.season[target], -1)
    q_colour = np.where(rng.random(n_queries) < 0.25, rng.integers(0, len(COLOURS), n_queries), -1)
    texts, intents, qids = [], [], []
    jq, ji, jl = [], [], []
    shown = np.zeros((n_queries, 10), dtype=np.int64)
    shown_labels = np.zeros((n_queries, 10), dtype=np.int8)
    cat_of_item = tax.category_id[core.type_id]
    seen: set[str] = set()
    keep: list[int] = []
    for q in range(n_queries):
        t = target[q]
        words = []
        if q_season[q] >= 0:
            words.append(SEASON_WORDS[SEASONS[q_season[q]]][rng.integers(0, 8)])
        if q_colour[q] >= 0:
            words.append(COLOURS[q_colour[q]])
        words.append(tax.type_name[t].lower())
        if rng.random() < 0.15:
            words.append("for " + rng.choice(["men", "women", "kids", "home", "camping", "gift"]))
        text = " ".join(words)
        if text in seen:  # one id per distinct text, so a query split never leaks a text
            continue
        seen.add(text)
        keep.append(q)
        qid = stable_query_id(text)
        qids.append(qid)
        texts.append(text)
        intents.append(tax.department[t] + CATEGORY_SEP + tax.category[t])
        # Candidates: items of the type, of the category, and random others.
        same_type = order[starts[t] : starts[t] + counts[t]]
        pick_t = rng.choice(same_type, size=min(12, len(same_type)), replace=False)
        cat_types = np.flatnonzero(tax.category_id == tax.category_id[t])
        sib = cat_types[cat_types != t]
        sib = sib[counts[sib] > 0]
        pick_c = np.array(
            [order[starts[s] + rng.integers(0, counts[s])] for s in rng.choice(sib, size=min(6, len(sib)))]
            if len(sib)
            else [],
            dtype=np.int64,
        )
        pick_r = rng.integers(0, n_items, 6)
        cands = np.unique(np.concatenate([pick_t, pick_c, pick_r]))
        same_t = core.type_id[cands] == t
        same_c = cat_of_item[cands] == tax.category_id[t]
        attr_ok = np.ones(len(cands), dtype=bool)
        if q_season[q] >= 0:
            attr_ok &= core.season[cands] == q_season[q]
        if q_colour[q] >= 0:
            attr_ok &= core.colour[cands] == q_colour[q]
        has_attr = q_season[q] >= 0 or q_colour[q] >= 0
        label = np.where(same_t & attr_ok & has_attr, 3, np.where(same_t, 2, np.where(same_c, 1, 0)))
        if not has_attr:
            label = np.where(same_t & (core.popularity[cands] > 20), 3, label)
        jq.extend([len(qids) - 1] * len(cands))
        ji.extend(cands.tolist())
        jl.extend(label.tolist())
        # The list a (noisy) production ranker showed: top 10 by label + noise.
        score = label + rng.normal(0, 0.9, len(cands))
        top = cands[np.argsort(-score, kind="stable")][:10]
        top_l = label[np.argsort(-score, kind="stable")][:10]
        if len(top) < 10:
            extra = rng.integers(0, n_items, 10 - len(top))
            top = np.concatenate([top, extra])
            top_l = np.concatenate([top_l, np.zeros(len(extra), dtype=label.dtype)])
        shown[q] = top
        shown_labels[q] = top_l
    shown, shown_labels = shown[keep], shown_labels[keep]
    queries = pl.DataFrame({"query_id": qids, "text": texts, "intent": intents}, schema=SCHEMAS["queries"])
    jq_arr = np.array(jq)
    judgements = pl.DataFrame(
        {
            "query_id": np.array(qids, dtype=object)[jq_arr].astype(str),
            "query": np.array(texts, dtype=object)[jq_arr].astype(str),
            "item_id": _item_ids(np.array(ji)),
            "label": np.array(jl, dtype=np.float64),
        },
        schema=SCHEMAS["judgements"],
    )
    return queries, judgements, shown, shown_labels


def _item_ids(idx: np.ndarray | pl.Series) -> pl.Series:
    """ "SKU0000042" style ids for item indexes."""
    s = pl.Series("i", idx, dtype=pl.Int64)
    return s.to_frame().select(pl.format("SKU{}", pl.col("i").cast(pl.Utf8).str.zfill(7))).to_series()


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


def _events(
    seed: int, texts: np.ndarray, shown: np.ndarray, shown_labels: np.ndarray, n_sessions: int, salt: str
) -> pl.DataFrame:
    """Impressions of 10 results per session, position-biased clicks, some purchases."""
    rng = _rng(seed, 3)
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
                    "item_id": _item_ids(items[s_idx, p_idx]),
                    "event_type": kind,
                    "timestamp": ts,
                    "position": (p_idx + 1).astype(np.int32),
                    "s": s_idx,
                }
            )
        )
    df = pl.concat(parts).sort(["timestamp", "s", "position"])
    return conform(df, "events")


def _transactions(tax: Taxonomy, core: ItemCore, seed: int, n_tx: int, salt: str) -> pl.DataFrame:
    rng = _rng(seed, 4)
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


@dataclass
class SynthSizes:
    n_items: int
    n_queries: int
    n_sessions: int
    n_transactions: int

    @classmethod
    def for_items(cls, n_items: int) -> SynthSizes:
        if n_items < 1:
            raise ValueError("n_items must be at least 1")
        n_queries = int(min(5000, max(100, n_items // 10)))
        n_sessions = int(min(100_000, max(1000, n_queries * 5)))
        n_tx = int(min(500_000, max(2000, n_items * 2)))
        return cls(n_items, n_queries, n_sessions, n_tx)


def _generate_logs(tax: Taxonomy, core: ItemCore, seed: int, sizes: SynthSizes, salt: str) -> dict[str, pl.DataFrame]:
    queries, judgements, shown, shown_labels = _queries_and_judgements(tax, core, seed, sizes.n_queries)
    texts = np.array(queries["text"].to_list(), dtype=object)
    events = _events(seed, texts, shown, shown_labels, sizes.n_sessions, salt)
    tx = _transactions(tax, core, seed, sizes.n_transactions, salt)
    item = tx["item"].to_numpy()
    tx = tx.with_columns(
        _item_ids(item).alias("item_id"),
        pl.Series("description", _titles_for(tax, core, item), dtype=pl.Utf8),
    )
    return {"queries": queries, "judgements": judgements, "events": events, "transactions": conform(tx, "transactions")}


def _titles_for(tax: Taxonomy, core: ItemCore, idx: np.ndarray) -> np.ndarray:
    """Short transaction descriptions (brand + type), like a till receipt."""
    return (np.array(BRANDS, dtype=object)[core.brand[idx]] + " " + tax.type_name[core.type_id[idx]]).astype(str)


def _core_all(tax: Taxonomy, n_items: int, seed: int) -> list[ItemCore]:
    return [_item_chunk(tax, seed, k, n) for k, _start, n in _chunks(n_items)]


def _concat_core(parts: list[ItemCore]) -> ItemCore:
    return ItemCore(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in ItemCore.__dataclass_fields__})


def generate(n_items: int = DEFAULT_ITEMS, seed: int = 0, salt: str | None = None) -> dict[str, pl.DataFrame]:
    """All five canonical frames in memory (use write_dataset for large catalogues)."""
    tax = taxonomy()
    parts = _core_all(tax, n_items, seed)
    starts = [s for _k, s, _n in _chunks(n_items)]
    catalogue = pl.concat([_catalogue_frame(tax, p, s) for p, s in zip(parts, starts, strict=True)])
    core = _concat_core(parts)
    logs = _generate_logs(tax, core, seed, SynthSizes.for_items(n_items), id_salt(salt))
    return {"catalogue": catalogue, **logs}


def _atomic_parquet(path: Path, frames: Any, schema: Any | None = None) -> None:
    """Write an iterable of frames into one parquet file, via a temp file and rename."""
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    tmp.close()
    writer = None
    try:
        for df in frames:
            table = df.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp.name, table.schema, compression="zstd")
            writer.write_table(table)
        if writer is not None:
            writer.close()
            writer = None
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, path)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)


def write_dataset(
    out_dir: str | Path,
    n_items: int = DEFAULT_ITEMS,
    seed: int = 0,
    salt: str | None = None,
    progress: bool | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write catalogue/queries/judgements/events/transactions .parquet and manifest.json to ``out_dir``.

    The catalogue streams one chunk at a time; each file appears atomically (temp file + rename).
    Returns the manifest (row counts, seed, sizes).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tax = taxonomy()
    chunks = _chunks(n_items)
    if progress is None:
        progress = n_items >= 200_000
    bar = tqdm(total=n_items + 1, desc="synth", unit="item", disable=not progress, unit_scale=True)
    cores: list[ItemCore] = []

    def catalogue_chunks() -> Any:
        for k, start, n in chunks:
            core = _item_chunk(tax, seed, k, n)
            cores.append(core)
            yield _catalogue_frame(tax, core, start)
            bar.update(n)
            if on_chunk:
                on_chunk(n)

    _atomic_parquet(out / "catalogue.parquet", catalogue_chunks())
    core = _concat_core(cores)
    del cores[:]
    bar.set_description("synth: queries, clicks, transactions")
    logs = _generate_logs(tax, core, seed, SynthSizes.for_items(n_items), id_salt(salt))
    counts = {"catalogue": n_items}
    for kind, df in logs.items():
        _atomic_parquet(out / f"{kind}.parquet", [df])
        counts[kind] = df.height
    bar.update(1)
    bar.close()
    sizes = SynthSizes.for_items(n_items)
    manifest = {
        "generator": "shoprank.data.synth",
        "seed": seed,
        "n_items": n_items,
        "sizes": sizes.__dict__,
        "rows": counts,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "files": {k: f"{k}.parquet" for k in counts},
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest
