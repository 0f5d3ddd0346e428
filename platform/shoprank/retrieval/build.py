"""Build a versioned index artefact from a catalogue with a Ray Data job.

Polars reads the catalogue (canonical parquet/CSV, or any format ``shoprank.data.loaders``
knows); Ray Data embeds it with ``shoprank.batch.embed.ItemEmbedder`` on an actor pool (the
model loads once per actor); the result is written with
:func:`shoprank.retrieval.artefact.write_artefact` (atomic, versioned). Each item's ``pair`` text
(the checkpoint's recipe, :mod:`shoprank.model.text`) is what gets embedded; the artefact keeps it
(items column ``text``) and the recipes (manifest ``item_text``), so serving reads the same text. The
artefact also holds a BM25 index over each item's lexical text (title, brand, category path, description,
attribute values: :mod:`shoprank.retrieval.lexical`) for hybrid retrieval.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.errors import DataError
from shoprank.retrieval.artefact import DEFAULT_HNSW_THRESHOLD, ITEM_COLUMNS, TEXT_COLUMN, write_artefact
from shoprank.retrieval.compressed import DEFAULT_COMPRESSED_THRESHOLD
from shoprank.retrieval.lexical import lexical_fields


def read_catalogue(path: str | Path, fmt: str | None = None) -> pl.DataFrame:
    """A catalogue frame: through shoprank.data.loaders when available, else canonical parquet/CSV."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: catalogue not found")
    if fmt is not None and fmt not in ("parquet", "csv"):
        from shoprank.data.loaders import load  # any real format the data layer knows

        result = load(path, fmt)
        if "catalogue" not in result.frames:
            raise DataError(f"{path}: format {fmt!r} has no catalogue (frames: {sorted(result.frames)})")
        return result.frames["catalogue"]
    if path.is_dir():
        path = path / "catalogue.parquet"
        if not path.is_file():
            raise DataError(f"{path}: not found (give a catalogue file, or --format for a source folder)")
    if fmt == "parquet" or (fmt is None and path.suffix == ".parquet"):
        return pl.read_parquet(path)
    if fmt == "csv" or (fmt is None and path.suffix == ".csv"):
        return pl.read_csv(path, infer_schema_length=10_000)
    raise DataError(f"{path}: unknown catalogue format {fmt or path.suffix!r}; use parquet or csv (or --format)")


def embed_with_ray(
    frame: pl.DataFrame,
    *,
    checkpoint: str | None,
    encoder: str,
    num_actors: int = 1,
    batch_size: int = 256,
    num_cpus_per_actor: float = 1.0,
    num_gpus_per_actor: float = 0.0,
    encoder_runtime: str = "torch",
) -> tuple[pl.DataFrame, np.ndarray]:
    """Embed every row on a Ray Data actor pool; returns (items in output order, with the embedded
    ``text``, and embeddings)."""
    import ray

    from shoprank.batch.embed import TEXT_COLUMNS, ItemEmbedder, embeddings_of

    cols = [c for c in ("item_id", *TEXT_COLUMNS) if c in frame.columns]
    ds = ray.data.from_arrow(frame.select(cols).to_arrow())
    out = ds.map_batches(
        ItemEmbedder,
        fn_constructor_kwargs={"checkpoint": checkpoint, "encoder": encoder, "encoder_runtime": encoder_runtime},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
    table = out.select_columns(["item_id", "text", "embedding"]).to_arrow_refs()
    import pyarrow as pa

    tables = ray.get(table)
    merged = pa.concat_tables(tables) if tables else None
    if merged is None or merged.num_rows != frame.height:
        raise DataError(f"embedding job returned {0 if merged is None else merged.num_rows} rows for {frame.height}")
    ids = pl.from_arrow(merged.select(["item_id", "text"]))
    emb = embeddings_of(merged)
    order = ids.with_row_index("_pos").join(
        frame.with_row_index("_src").select(["item_id", "_src"]), on="item_id", how="left"
    )
    src = order["_src"].to_numpy()
    items = frame.drop("text", strict=False)[src].with_columns(order["text"].alias("text"))
    return items, emb


def build_index(
    catalogue: str | Path | pl.DataFrame,
    out_dir: str | Path,
    *,
    checkpoint: str | None = None,
    encoder: str = "minilm",
    fmt: str | None = None,
    num_actors: int = 1,
    batch_size: int = 256,
    hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
    num_gpus_per_actor: float = 0.0,
    shards: int = 1,
    compressed_threshold: int = DEFAULT_COMPRESSED_THRESHOLD,
    encoder_runtime: str = "torch",
    lexical: bool = True,
) -> dict[str, Any]:
    """Read, embed (Ray Data), write the artefact; returns its manifest plus timing. ``shards`` > 1: a
    sharded artefact, one Ray task per shard; ranges past ``compressed_threshold`` items get IVF-PQ.
    ``lexical``: also the BM25 index for hybrid retrieval (one row slice per shard)."""
    from shoprank.model.checkpoint import expected_model_version, read_manifest
    from shoprank.model.text import MANIFEST_KEY, recipes_of, recipes_to_json

    t0 = time.perf_counter()
    frame = catalogue if isinstance(catalogue, pl.DataFrame) else read_catalogue(catalogue, fmt)
    if frame.height == 0:
        raise DataError("catalogue is empty")
    if "item_id" not in frame.columns or "title" not in frame.columns:
        raise DataError("catalogue needs item_id and title columns")
    frame = frame.with_columns(pl.col("item_id").cast(pl.Utf8)).unique("item_id", keep="first", maintain_order=True)
    model_version = expected_model_version(checkpoint, encoder)
    items, emb = embed_with_ray(
        frame, checkpoint=checkpoint, encoder=encoder, num_actors=num_actors, batch_size=batch_size,
        num_gpus_per_actor=num_gpus_per_actor, encoder_runtime=encoder_runtime,
    )  # fmt: skip
    t1 = time.perf_counter()
    # the lexical index reads the catalogue's descriptive fields too (shoprank.retrieval.lexical.LEXICAL_FIELDS)
    wanted = (*ITEM_COLUMNS, TEXT_COLUMN, *lexical_fields(items.columns))
    keep = list(dict.fromkeys(c for c in wanted if c in items.columns))
    recipes = recipes_of(read_manifest(checkpoint) if checkpoint is not None else None)  # what the embedder used
    path = write_artefact(
        out_dir, items.select(keep), emb, model_version=model_version, encoder=encoder,
        hnsw_threshold=hnsw_threshold, shards=shards, compressed_threshold=compressed_threshold, lexical=lexical,
        extra={"source": str(catalogue) if not isinstance(catalogue, pl.DataFrame)
                                              else "<frame>", MANIFEST_KEY: recipes_to_json(recipes),
               "encoder_runtime": encoder_runtime},  # what embedded the items (shoprank.model.runtime)
    )  # fmt: skip
    from shoprank.retrieval.artefact import read_index_manifest

    manifest = read_index_manifest(path)
    manifest["embed_seconds"] = round(t1 - t0, 2)
    manifest["total_seconds"] = round(time.perf_counter() - t0, 2)
    return manifest
