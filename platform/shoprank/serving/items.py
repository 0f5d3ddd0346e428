"""What the ranker holds per index version (:class:`ItemTable`), and a ranked item as a ScoredItem's fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from shoprank.data.calendar import MONTH_SEASON
from shoprank.model.features import item_numeric_features
from shoprank.retrieval.artefact import IndexArtefact
from shoprank.serving.clicks import ClickItems, ClickPick


class ItemTable:
    """What the ranker needs per index version: embeddings, numeric features, season, metadata."""

    def __init__(self, artefact: IndexArtefact) -> None:
        self.artefact = artefact
        items = artefact.items
        self.embeddings = np.asarray(artefact.embeddings, dtype=np.float32)
        self.numeric = item_numeric_features(
            items["price"].to_numpy(), items["rating"].to_numpy(), items["popularity"].to_numpy()
        )
        self.season = np.array([(s or "").lower() for s in items["season"].to_list()], dtype=object)
        pop = np.log1p(np.nan_to_num(items["popularity"].to_numpy().astype(np.float64)).clip(min=0.0))
        self.popularity = (pop / pop.max() if pop.max() > 0 else pop).astype(np.float32)
        self.ids = items["item_id"].to_list()
        self.titles = items["title"].to_list()
        self.categories = items["category_path"].to_list()
        self.prices = items["price"].to_list()
        self.in_stock = items["in_stock"].to_list()
        self.clicks = ClickItems(items, artefact.manifest)  # the click blend's BM25 and item rows, built on first use

    def season_fit(self, positions: np.ndarray, month: int) -> np.ndarray:
        """1 when the item's season is the month's, 0.5 for all-season/unknown or no month, else 0."""
        if month == 0:
            return np.full(len(positions), 0.5, dtype=np.float32)
        want = MONTH_SEASON[month]
        s = self.season[positions]
        return np.where(s == want, 1.0, np.where((s == "all") | (s == ""), 0.5, 0.0)).astype(np.float32)


def ranked_item(table: ItemTable, p: int, score: float, scores: dict[str, float], r: int) -> dict[str, Any]:
    """One ranked item as a ScoredItem's fields (``r``: 0-based rank)."""
    price = table.prices[p]
    return {
        "item_id": table.ids[p],
        "title": table.titles[p],
        "score": score,
        "scores": scores,
        "category_path": table.categories[p] or "",
        "price": float("nan") if price is None else float(price),
        "in_stock": bool(table.in_stock[p]),
        "rank": r + 1,
    }


def blended_items(
    table: ItemTable, pos: np.ndarray, scores: dict[str, np.ndarray], pick: ClickPick
) -> list[dict[str, Any]]:
    """The click blend's list: score = the blend's click probability (``clicks.choice_probs``);
    ``scores`` = the model's (for retrieved items) + click_blend."""
    at = {int(p): o for o, p in enumerate(pos)}
    rows, _ = table.artefact.positions([i for i, _ in pick.items])
    out = []
    for r, ((_, s), p) in enumerate(zip(pick.items, rows, strict=True)):
        o = at.get(int(p))
        model = {n: float(v[o]) for n, v in scores.items()} if o is not None else {}
        out.append(ranked_item(table, int(p), s, {**model, "click_blend": s}, r))
    return out
