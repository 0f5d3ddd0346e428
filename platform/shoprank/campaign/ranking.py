"""Per-segment top-N with Polars, written as hive-partitioned parquet (``segment=<value>/``).

Ranking is two-stage so memory stays bounded by ``shards x segments x top_n`` rather than the
catalogue: each shard keeps its own per-segment top-N (:func:`shard_top`), and the final
ranking (:func:`rank_segments`) merges only those. Ties break on ``item_id`` so the order, and
hence every output byte, is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import polars as pl
import pyarrow as pa

from shoprank.campaign.source import atomic_write_parquet
from shoprank.files import staged_dir

RANKED_COLUMNS = (
    "item_id",
    "segment",
    "rank",
    "score",
    "theme_relevance",
    "season_fit",
    "demand",
    "click",
    "best_theme",
    "title",
    "category_path",
    "price",
)
_ORDER = (["segment", "score", "item_id"], [False, True, False])


def shard_top(scored: pl.DataFrame, top_n: int) -> pl.DataFrame:
    """The best ``top_n`` rows of each segment within one shard (scored rows only)."""
    return (
        scored.sort(*_ORDER[:1], descending=_ORDER[1])
        .group_by("segment", maintain_order=True)
        .head(top_n)
        .select([c for c in RANKED_COLUMNS if c != "rank"])
    )


def rank_segments(top_files: list[Path], top_n: int) -> pl.DataFrame:
    """Merge per-shard top-N files into the final per-segment ranking with a 1-based ``rank``."""
    if not top_files:
        return pl.DataFrame(schema={c: pl.Utf8 for c in RANKED_COLUMNS})
    merged = pl.scan_parquet([str(p) for p in top_files])
    return (
        merged.sort(*_ORDER[:1], descending=_ORDER[1])
        .unique(subset=["segment", "item_id"], keep="first", maintain_order=True)  # a repeated id ranks once
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("segment").alias("rank"))
        .filter(pl.col("rank") <= top_n)
        .select(list(RANKED_COLUMNS))
        .collect()
    )


def partition_dir_name(segment: str) -> str:
    """``segment=<value>`` with the value percent-encoded (slashes, spaces, '>' are safe)."""
    return "segment=" + quote(segment, safe="")


def write_partitioned(ranked: pl.DataFrame, directory: Path) -> list[Path]:
    """Write one ``segment=<value>/part-0.parquet`` per segment; swap the whole tree in at the end."""
    directory = Path(directory)
    paths = []
    table_schema = None
    with staged_dir(directory) as staging:
        for (segment,), part in ranked.partition_by("segment", as_dict=True, maintain_order=True).items():
            table = part.to_arrow()
            if table_schema is None:
                table_schema = pa.schema(
                    [
                        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
                        for f in table.schema
                    ]
                )
            table = table.cast(table_schema)
            rel = Path(partition_dir_name(str(segment))) / "part-0.parquet"
            atomic_write_parquet(table, staging / rel)
            paths.append(directory / rel)
    return paths
