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
The parts live in :mod:`shoprank.data.synthetic` (vocabulary, catalogue, queries, logs); this module
assembles them and writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from shoprank.data.synthetic.catalogue import (
    CHUNK,
    ItemCore,
    catalogue_frame,
    chunk_plan,
    concat_core,
    item_chunk,
    item_ids,
)
from shoprank.data.synthetic.logs import COUNTRIES, COUNTRY_WEIGHTS, YEAR, click_log, titles_for, transaction_log
from shoprank.data.synthetic.queries import queries_and_judgements
from shoprank.data.synthetic.vocabulary import (
    BRANDS,
    COLOURS,
    MATERIALS,
    SEASON_SENTENCES,
    SEASON_WORDS,
    TAXONOMY,
    Taxonomy,
    taxonomy,
)
from shoprank.data.validate import conform
from shoprank.files import atomic_path, atomic_write_text
from shoprank.hashing import id_salt

__all__ = [
    "BRANDS",
    "CHUNK",
    "COLOURS",
    "COUNTRIES",
    "COUNTRY_WEIGHTS",
    "DEFAULT_ITEMS",
    "MATERIALS",
    "SEASON_SENTENCES",
    "SEASON_WORDS",
    "TAXONOMY",
    "YEAR",
    "ItemCore",
    "SynthSizes",
    "Taxonomy",
    "generate",
    "taxonomy",
    "write_dataset",
]

DEFAULT_ITEMS = 10_000


@dataclass
class SynthSizes:
    """Row counts of the generated files, derived from the catalogue size."""

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
    queries, judgements, shown, shown_labels = queries_and_judgements(tax, core, seed, sizes.n_queries)
    texts = np.array(queries["text"].to_list(), dtype=object)
    events = click_log(seed, texts, shown, shown_labels, sizes.n_sessions, salt)
    tx = transaction_log(tax, core, seed, sizes.n_transactions, salt)
    item = tx["item"].to_numpy()
    tx = tx.with_columns(
        item_ids(item).alias("item_id"),
        pl.Series("description", titles_for(tax, core, item), dtype=pl.Utf8),
    )
    return {"queries": queries, "judgements": judgements, "events": events, "transactions": conform(tx, "transactions")}


def _core_all(tax: Taxonomy, n_items: int, seed: int) -> list[ItemCore]:
    return [item_chunk(tax, seed, k, n) for k, _start, n in chunk_plan(n_items)]


def generate(n_items: int = DEFAULT_ITEMS, seed: int = 0, salt: str | None = None) -> dict[str, pl.DataFrame]:
    """All five canonical frames in memory (use write_dataset for large catalogues)."""
    tax = taxonomy()
    parts = _core_all(tax, n_items, seed)
    starts = [s for _k, s, _n in chunk_plan(n_items)]
    catalogue = pl.concat([catalogue_frame(tax, p, s) for p, s in zip(parts, starts, strict=True)])
    core = concat_core(parts)
    logs = _generate_logs(tax, core, seed, SynthSizes.for_items(n_items), id_salt(salt))
    return {"catalogue": catalogue, **logs}


def _atomic_parquet(path: Path, frames: Any, schema: Any | None = None) -> None:
    """Write an iterable of frames into one parquet file atomically (``shoprank.files.atomic_path``)."""
    with atomic_path(path, mode=0o644) as tmp:
        writer = None
        try:
            for df in frames:
                table = df.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()


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
    chunks = chunk_plan(n_items)
    if progress is None:
        progress = n_items >= 200_000
    bar = tqdm(total=n_items + 1, desc="synth", unit="item", disable=not progress, unit_scale=True)
    cores: list[ItemCore] = []

    def catalogue_chunks() -> Any:
        for k, start, n in chunks:
            core = item_chunk(tax, seed, k, n)
            cores.append(core)
            yield catalogue_frame(tax, core, start)
            bar.update(n)
            if on_chunk:
                on_chunk(n)

    _atomic_parquet(out / "catalogue.parquet", catalogue_chunks())
    core = concat_core(cores)
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
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n", mode=0o644)
    return manifest
