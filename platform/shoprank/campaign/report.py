"""The campaign report: Markdown with summary tables and PNG plots (matplotlib, Agg backend).

Everything here is a function of the committed shard results, so the report (and its plots)
is byte-identical between an uninterrupted run and a resumed one. Run timings live in
``run.json`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.campaign.scoring import SCORE_COLUMNS
from shoprank.campaign.spec import CampaignSpec
from shoprank.files import atomic_path, atomic_write_text

MAX_PLOTTED_SEGMENTS = 6
TOP_IN_REPORT = 10
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SCORE_DOC = {
    "theme_relevance": "best theme's relevance to the item",
    "season_fit": "probability mass on the campaign window's seasons",
    "demand": "share of yearly demand falling in the campaign months",
    "click": "click propensity",
    "score": "blend-weighted final campaign score",
}


def _plt():  # noqa: ANN202 - matplotlib.pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "shoprank"
    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _biggest_segments(agg: dict[str, Any]) -> list[str]:
    segs = sorted(agg["segments"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))
    return [s for s, _ in segs[:MAX_PLOTTED_SEGMENTS]]


def plot_score_distributions(agg: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(SCORE_COLUMNS), figsize=(3.2 * len(SCORE_COLUMNS), 2.8), sharey=False)
    for ax, c in zip(axes, SCORE_COLUMNS, strict=True):
        h = np.asarray(agg["hist"].get(c, [0]), dtype=float)
        edges = np.linspace(0.0, 1.0, len(h) + 1)
        ax.bar(edges[:-1], h, width=edges[1] - edges[0], align="edge", color="#4477aa")
        ax.set_title(c, fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
    fig.suptitle("Score distributions (all scored items)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_top_items(ranked: pl.DataFrame, segments: list[str], path: Path, k: int = 8) -> None:
    plt = _plt()
    n = max(1, len(segments))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.0 + 0.28 * k * n), squeeze=False)
    for ax, seg in zip(axes[:, 0], segments or ["(none)"], strict=True):
        top = ranked.filter(pl.col("segment") == seg).sort("rank").head(k)
        labels = [f"{r['item_id']}: {str(r['title'])[:45]}" for r in top.iter_rows(named=True)][::-1]
        ax.barh(range(len(labels)), top.get_column("score").to_list()[::-1] if top.height else [], color="#228833")
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(f"segment: {seg}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_demand_by_month(agg: dict[str, Any], segments: list[str], window: list[int], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(1, 13)
    for seg in segments:
        v = agg["segments"][seg]
        ax.plot(x, np.asarray(v["demand_by_month"]) / max(v["n"], 1), marker="o", label=seg[:40])
    for m in window:
        ax.axvspan(m - 0.5, m + 0.5, color="#ffcc00", alpha=0.2, lw=0)
    ax.set_xticks(x)
    ax.set_xticklabels(MONTHS, fontsize=8)
    ax.set_ylabel("mean predicted demand share", fontsize=8)
    ax.set_title("Demand by month (campaign window shaded)", fontsize=10)
    if segments:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_report(
    out: Path, spec: CampaignSpec, summary: dict[str, Any], agg: dict[str, Any], ranked: pl.DataFrame
) -> Path:
    """Write ``report.md`` and ``plots/*.png`` under ``out``; return the report path."""
    plots = out / "plots"
    segments = _biggest_segments(agg)
    plot_score_distributions(agg, plots / "score_distributions.png")
    plot_top_items(ranked, segments[:4], plots / "top_items.png")
    plot_demand_by_month(agg, segments, spec.window, plots / "demand_by_month.png")
    zs = summary["zero_shot"]
    lines = [
        f"# Campaign report: {spec.name}",
        "",
        f"- catalogue: `{summary['catalogue']}` ({summary['format']}), model: `{summary['model_version']}`",
        f"- window: months {', '.join(str(m) for m in spec.window)}; themes: "
        + "; ".join(f"“{t}”" for t in summary["themes"]),
        "- blend: "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["blend"].items())
        + f"; top {spec.top_n} per segment",
        "- **zero-shot scores** (no trained head in the model): "
        + (", ".join(zs) if zs else "none, all heads trained"),
        "",
        "## Catalogue",
        "",
        _table(
            ["rows", "scored", "filtered out", "quarantined", "shards", "segments"],
            [
                [
                    summary["rows"],
                    summary["scored"],
                    summary["filtered"],
                    summary["quarantined"],
                    summary["shards"],
                    len(agg["segments"]),
                ]
            ],
        ),
        "",
    ]
    if summary["quarantine_reasons"]:
        lines += [
            "Quarantined rows (in `quarantine/`):",
            "",
            _table(["reason", "rows"], [[r, n] for r, n in summary["quarantine_reasons"].items()]),
            "",
        ]
    lines += [
        "## Scores",
        "",
        _table(
            ["score", "meaning", "zero-shot"],
            [[c, SCORE_DOC[c], "yes" if c in zs else ("-" if c == "score" else "no")] for c in SCORE_COLUMNS],
        ),
        "",
        "![score distributions](plots/score_distributions.png)",
        "",
    ]
    seg_rows = []
    for seg, v in sorted(agg["segments"].items(), key=lambda kv: (-kv[1]["n"], kv[0])):
        top1 = ranked.filter((pl.col("segment") == seg) & (pl.col("rank") == 1))
        best = f"{top1.item(0, 'item_id')}: {top1.item(0, 'title')}" if top1.height else ""
        seg_rows.append([seg, v["n"], f"{v['score_sum'] / max(v['n'], 1):.3f}", best])
    lines += [
        "## Segments",
        "",
        _table(["segment", "items", "mean score", "top item"], seg_rows[:50]),
        "" if len(seg_rows) <= 50 else f"\n({len(seg_rows) - 50} more segments in `summary.json`)",
        "",
        "![demand by month](plots/demand_by_month.png)",
        "",
        "## Top items per segment",
        "",
        "![top items](plots/top_items.png)",
        "",
    ]
    for seg in segments:
        top = ranked.filter(pl.col("segment") == seg).sort("rank").head(TOP_IN_REPORT)
        lines += [f"### {seg}", ""]
        lines.append(
            _table(
                ["rank", "item_id", "title", "score", "theme", "season", "demand", "click", "best theme"],
                [
                    [
                        r["rank"],
                        r["item_id"],
                        str(r["title"])[:60],
                        f"{r['score']:.3f}",
                        f"{r['theme_relevance']:.3f}",
                        f"{r['season_fit']:.3f}",
                        f"{r['demand']:.3f}",
                        f"{r['click']:.3f}",
                        r["best_theme"],
                    ]
                    for r in top.iter_rows(named=True)
                ],
            )
        )
        lines.append("")
    lines += [
        "## Files",
        "",
        "- `ranked/segment=<value>/part-0.parquet`: per-segment top-N (item_id, segment, rank, every score)",
        "- `_work/shards/scores-*.parquet`: every scored item's scores (one file per shard)",
        "- `summary.json`: these numbers, machine-readable; `run.json`: this run's timings",
        "- `quarantine/`: malformed catalogue rows with the reason",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
