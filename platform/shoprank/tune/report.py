"""Sweep outputs: trials table (CSV + Markdown), weights-vs-objective plot, comparison report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.files import atomic_write_text


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown_table(df: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a (small) frame."""
    head = "| " + " | ".join(df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([head, sep, *rows]) + "\n"


def write_trials(trials: pl.DataFrame, out: Path) -> None:
    """``trials.csv`` and ``trials.md`` (atomic)."""
    atomic_write_text(out / "trials.csv", trials.write_csv())
    atomic_write_text(out / "trials.md", markdown_table(trials))


def plot_weights(trials: pl.DataFrame, tasks: list[str], out: Path) -> Path:
    """One panel per task: sampled loss weight (log x) against the trial's objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [t for t in tasks if f"weight/{t}" in trials.columns]
    n = max(len(cols), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
    for ax, t in zip(axes[0], cols, strict=False):
        ax.scatter(trials[f"weight/{t}"].to_list(), trials["best_objective"].to_list(), s=18)
        ax.set_xscale("log")
        ax.set_xlabel(f"w[{t}]")
        ax.set_ylabel("best objective (val)")
    fig.tight_layout()
    path = out / "weights_vs_objective.png"
    tmp = out / ".weights_vs_objective.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """Held-out comparison of the tuned weights against the baselines, task by task."""
    runs = comparison["runs"]
    names = list(runs)
    metrics = sorted({m for r in runs.values() for m in r["test_metrics"]})
    lines = [
        f"Winner on the held-out composite objective: **{comparison['winner']}**"
        f" (margin over the best baseline: {comparison['margin']:+.4f}).",
        "",
        "| metric | " + " | ".join(names) + " | tuned − " + " | tuned − ".join(n for n in names if n != "tuned") + " |",
        "| --- " * (1 + 2 * len(names) - 1) + "|",
    ]
    lines.append(
        "| **objective (test)** | "
        + " | ".join(_fmt(runs[n]["objective"]) for n in names)
        + " | "
        + " | ".join(_fmt(runs["tuned"]["objective"] - runs[n]["objective"]) for n in names if n != "tuned")
        + " |"
    )
    for m in metrics:
        vals = [runs[n]["test_metrics"].get(m, float("nan")) for n in names]
        deltas = [
            runs["tuned"]["test_metrics"].get(m, float("nan")) - runs[n]["test_metrics"].get(m, float("nan"))
            for n in names
            if n != "tuned"
        ]
        lines.append(
            f"| {m} | " + " | ".join(_fmt(v) for v in vals) + " | " + " | ".join(_fmt(d) for d in deltas) + " |"
        )
    lines += ["", "Weights: " + json.dumps({n: runs[n]["weights"] for n in names}, sort_keys=True)]
    if comparison.get("warm_start"):
        w = comparison["warm_start"]
        same = "the same split" if w["same_split"] else f"ANOTHER split ({', '.join(w['differs'])}): figures may leak"
        lines += ["", f"Every run warm-started from `{w['init_from']}`, trained on {same}."]
    if comparison.get("seed_spread"):
        lines += ["", *seed_lines(comparison["seed_spread"])]
    if comparison.get("compute"):
        lines += ["", *compute_lines(comparison["compute"])]
    return "\n".join(lines) + "\n"


SEED_ORDER = ("equal", "uncertainty", "tuned")  # the columns of the seed table


def seed_lines(seeds: dict[str, Any]) -> list[str]:
    """Each weighting's held-out mean ± std over its seeds, and the tuned mean's gain over equal
    weights against twice equal weights' std."""
    n = len(seeds["seeds"])
    if n < 2:
        return ["Seed spread not measured (one equal-weights seed): set `baseline_seeds: 3` to judge gains against it."]
    kinds = [k for k in SEED_ORDER if k in seeds["kinds"]] + sorted(set(seeds["kinds"]) - set(SEED_ORDER))
    counts = ", ".join(f"{k} {len(seeds['kinds'][k])}" for k in kinds)
    lines = [
        f"Held-out mean ± std over seeds ({counts}; tuned seed 0 is the search's selected trial, the other"
        " seeds re-train its final weights):",
        "",
        "| metric | " + " | ".join(kinds) + " | tuned − equal | verdict (vs 2 × equal std) |",
        "| --- " * (len(kinds) + 3) + "|",
    ]
    for key, r in seeds["rows"].items():
        cells = [
            f"{_fmt(r['by_kind'][k]['mean'])} ± {_fmt(r['by_kind'][k]['std'])}" if k in r["by_kind"] else "–"
            for k in kinds
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {r['gain']:+.4f} | {r['verdict']} |")
    return lines


def compute_lines(compute: dict[str, Any]) -> list[str]:
    """CPU/GPU hours of the search and the baselines, and the search priced in equal-weights runs."""
    s, b = compute["search"], compute["baselines"]
    lines = [
        f"Compute ({compute.get('scheduler', '?')} search, trial wall time × resources per trial):",
        "",
        "| part | trials | trial hours | CPU hours | GPU hours |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, c in (("search", s), ("baselines", b)):
        hours = [c["trial_seconds"] / 3600, c["cpu_hours"], c["gpu_hours"]]
        lines.append(f"| {name} | {c['trials']} | " + " | ".join(f"{h:.3f}" for h in hours) + " |")
    if math.isnan(s["seed_run_seconds"]):
        lines += ["", "No equal-weights run finished, so the search is not priced in seeds."]
    else:
        lines += [
            "",
            f"The search's compute would buy **{s['equivalent_seeds']:.1f}** equal-weights runs "
            f"({s['seed_run_seconds']:.0f} s each) on the same resources.",
        ]
    return lines
