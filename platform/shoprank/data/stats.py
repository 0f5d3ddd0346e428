"""Descriptive statistics of canonical frames: row counts, nulls, distinct counts, distributions."""

from __future__ import annotations

from typing import Any

import polars as pl

from shoprank.data.schemas import CATEGORY_SEP

TOP = 10


def _top(df: pl.DataFrame, expr: pl.Expr, name: str, k: int = TOP) -> list[tuple[str, int]]:
    counts = (
        df.select(expr.alias(name)).group_by(name).len().sort(["len", name], descending=[True, False], nulls_last=True)
    )
    return [(str(v) if v is not None else "(null)", int(n)) for v, n in counts.head(k).iter_rows()]


def frame_stats(kind: str, df: pl.DataFrame) -> dict[str, Any]:
    """Row count, per-column nulls and distinct counts, and the distributions that matter for ``kind``."""
    cols = {}
    if df.height:
        nulls = df.null_count().row(0, named=True)
        distinct = df.select([pl.col(c).n_unique().alias(c) for c in df.columns]).row(0, named=True)
    else:
        nulls = dict.fromkeys(df.columns, 0)
        distinct = dict.fromkeys(df.columns, 0)
    for c in df.columns:
        dtype = df.schema[c]
        cols[c] = {
            "dtype": f"datetime[{dtype.time_unit}]" if isinstance(dtype, pl.Datetime) else str(dtype),
            "nulls": int(nulls[c]),
            "distinct": int(distinct[c]),
        }
    out: dict[str, Any] = {"rows": df.height, "columns": cols, "distributions": {}}
    dist = out["distributions"]
    if df.height == 0:
        return out
    if "category_path" in df.columns:
        dist["top-level category"] = _top(df, pl.col("category_path").str.split(CATEGORY_SEP).list.first(), "c")
        dist["category depth"] = _top(df, pl.col("category_path").str.split(CATEGORY_SEP).list.len().cast(pl.Utf8), "d")
    if "season" in df.columns:
        dist["season"] = _top(df, pl.col("season"), "s", k=10)
    if "price" in df.columns and df["price"].drop_nulls().len():
        p = df["price"].drop_nulls()
        dist["price"] = [(q, round(float(p.quantile(v)), 2)) for q, v in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))]
    if "intent" in df.columns:
        dist["intent"] = _top(df, pl.col("intent"), "i")
    if "label" in df.columns:
        dist["label"] = _top(df, pl.col("label").cast(pl.Utf8), "l")
    if "event_type" in df.columns:
        dist["event_type"] = _top(df, pl.col("event_type"), "e")
    if "position" in df.columns and "event_type" in df.columns and df["position"].drop_nulls().len():
        dist["clicks by position"] = _top(
            df.filter(pl.col("event_type") == "click"), pl.col("position").cast(pl.Utf8), "p"
        )
    if "timestamp" in df.columns:
        ts = df["timestamp"].drop_nulls()
        if ts.len():
            dist["time range"] = [("min", str(ts.min())), ("max", str(ts.max()))]
            month = df.select(pl.col("timestamp").dt.strftime("%Y-%m").alias("m")).group_by("m").len().sort("m")
            dist["rows by month"] = [(m or "(null)", int(n)) for m, n in month.iter_rows()]
    if "quantity" in df.columns:
        dist["returns (quantity < 0)"] = [("rows", int(df.filter(pl.col("quantity") < 0).height))]
    return out


def dataset_stats(frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    return {kind: frame_stats(kind, df) for kind, df in frames.items()}


def format_stats(stats: dict[str, Any]) -> str:
    lines: list[str] = []
    for kind, s in stats.items():
        lines.append(f"{kind}: {s['rows']:,} rows")
        width = max((len(c) for c in s["columns"]), default=0)
        for c, info in s["columns"].items():
            lines.append(
                f"  {c:<{width}}  {info['dtype']:<16} nulls {info['nulls']:>9,}  distinct {info['distinct']:>9,}"
            )
        for name, items in s["distributions"].items():
            shown = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in items)
            lines.append(f"  {name}: {shown}")
    return "\n".join(lines)
