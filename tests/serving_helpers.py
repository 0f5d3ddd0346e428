"""Shared helpers for the serving tests: a small catalogue, its index, exact-text queries."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from shoprank.model.text import item_text
from shoprank.retrieval.artefact import write_artefact
from shoprank.retrieval.synthetic import synthetic_catalogue

N_ITEMS = 300


def small_catalogue(n: int = N_ITEMS) -> pl.DataFrame:
    return synthetic_catalogue(n, seed=0)


def text_of(cat: pl.DataFrame, i: int) -> str:
    """The exact text the index embedded for row ``i`` (so it is that item's nearest neighbour)."""
    r = cat.row(i, named=True)
    return item_text(r["title"], r["description"], r["category_path"])


def index_with_model(model, cat: pl.DataFrame, out: Path, model_version: str, **kw) -> Path:
    """An artefact embedded directly with ``model`` (no Ray), for fast tests."""
    emb = model.embed([text_of(cat, i) for i in range(cat.height)])
    return write_artefact(out, cat, emb, model_version=model_version, encoder=model.config.encoder, **kw)
