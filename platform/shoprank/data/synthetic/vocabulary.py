"""The synthetic shop's vocabulary: the category taxonomy with home seasons, season words, brands, colours.

Data tables, no logic beyond :func:`taxonomy` (flat arrays over the 160 types).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprank.data.schemas import CATEGORY_SEP, SEASONS

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
