"""``shoprank events load --ray``: the bulk load as a Ray Data job, for event logs too big for one process.

Canonical ``events`` files (parquet or CSV, one file or a folder of them, as ``shoprank data``
writes them) are read by Ray Data in parallel blocks. Each row is sent to one of ``shards`` groups by
a hash of its content, so identical rows always meet in one group; each group is checked by the
canonical loader's rules (bad rows quarantined and counted by reason) and written by
:func:`shoprank.store.load.write_frame`, which numbers identical rows 0, 1, 2, ... as the
single-process load does. The event ids, and so the idempotency, are the single-process load's:
a log loaded either way is not counted again by the other. Every group writes from its own Ray task
with its own connection; the store applies each atomic batch whole.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from shoprank.data.schemas import SCHEMAS
from shoprank.data.sources.canonical import canonical_frame
from shoprank.errors import DataError
from shoprank.store.config import StoreConfig
from shoprank.store.load import LoadReport, write_frame

SHARD = "__shard"
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def event_files(path: str | Path) -> tuple[list[str], str]:
    """The canonical events files of ``path`` (a file, or every parquet/CSV file under a folder) and their kind."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix.lower() in _SUFFIXES)
    kinds = {_SUFFIXES.get(f.suffix.lower()) for f in files}
    if not files or None in kinds or len(kinds) > 1:
        raise DataError(f"{p}: need canonical events files, all parquet or all CSV (found {len(files)} file(s))")
    return [str(f.resolve()) for f in files], kinds.pop() or "parquet"


def _with_shard(batch: pa.Table, shards: int) -> pa.Table:
    """Each row's group: a hash of its canonical columns' text (identical rows, one group)."""
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    key = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("\x00") for c in SCHEMAS["events"]], separator="\x1f")
    return df.with_columns((key.hash(seed=0) % shards).cast(pl.Int64).alias(SHARD)).to_arrow()


def _write_group(batch: pa.Table, store_url: str, cfg: dict[str, Any], batch_size: int, source: str) -> pa.Table:
    """Check and write one group's rows; one row of counts back."""
    df = pl.from_arrow(batch)
    assert isinstance(df, pl.DataFrame)
    df = df.drop(SHARD).with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias("__row"))
    frame, parts = canonical_frame(df, "events", source)
    q = pl.concat(parts) if parts else pl.DataFrame()
    skipped: Counter[str] = Counter()
    if q.height:
        skipped.update({f"quarantined: {r}": n for r, n in q.group_by("reason").len().iter_rows()})
    sent, res = write_frame(frame, store_url, StoreConfig.model_validate(cfg), skipped, batch_size)
    return pa.table({"rows": [df.height], "events": [sent], "accepted": [res.accepted],
                     "duplicates": [res.duplicates], "skipped": [json.dumps(dict(skipped))]})  # fmt: skip


def load_events_ray(
    path: str | Path,
    store_url: str,
    cfg: StoreConfig | None = None,
    shards: int = 8,
    batch_size: int = 500,
    address: str | None = None,
) -> LoadReport:
    """Load canonical events files into the store with Ray Data (see the module docstring); idempotent."""
    import ray

    from shoprank.ray_runtime import init_ray

    cfg = cfg or StoreConfig()
    files, kind = event_files(path)
    t0 = time.perf_counter()
    init_ray(address)
    ds = ray.data.read_parquet(files) if kind == "parquet" else ray.data.read_csv(files)
    missing = [c for c in SCHEMAS["events"] if c not in ds.schema().names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; canonical events need {list(SCHEMAS['events'])}")
    ds = ds.map_batches(_with_shard, batch_format="pyarrow", fn_kwargs={"shards": shards})
    groups = ds.groupby(SHARD).map_groups(
        _write_group, batch_format="pyarrow",
        fn_kwargs={"store_url": store_url, "cfg": cfg.model_dump(), "batch_size": batch_size, "source": str(path)},
    )  # fmt: skip
    report = LoadReport(str(path), f"canonical ({kind}, Ray Data, {shards} shards)")
    skipped: Counter[str] = Counter()
    for row in groups.take_all():
        report.rows_read += int(row["rows"])
        report.events += int(row["events"])
        report.accepted += int(row["accepted"])
        report.duplicates += int(row["duplicates"])
        skipped.update(json.loads(row["skipped"]))
    report.skipped = dict(skipped)
    report.seconds = time.perf_counter() - t0
    return report
