"""Reports: one JSON object, a Markdown table and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4f}"
    return "–" if v is None else str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (dicts); missing cells show as an en dash."""
    if not rows:
        return "(no rows)\n"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


SPLIT_LEGEND = {  # the ``split`` of an eval row (shoprank.tasks.examples.split_kind; docs/splits.md)
    "query": "held out by normalised query: queries no training row has",
    "time": "the newest slice of the log",
    "title": "items whose normalised title no training item has",
    "item": "a random split by item id (test titles may occur in training)",
    "item:unseen_titles": "the item split's test items whose normalised title no training item has",
}


def split_legend(rows: list[dict[str, Any]]) -> str:
    """What each ``split`` named in ``rows`` means, as Markdown lines ("" when none is named)."""
    names = list(dict.fromkeys(r["split"] for r in rows if r.get("split")))
    return "".join(f"- `{n}`: {SPLIT_LEGEND.get(n, n)}\n" for n in names)


def write_report(report: dict[str, Any], out_dir: str | Path, name: str = "eval") -> dict[str, Path]:
    """``<name>.json`` and ``<name>.md`` (the table of ``report["table"]`` and what its splits mean) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float, sort_keys=True))
    rows = report.get("table") or []
    legend = split_legend(rows)
    md = f"# shoprank evaluation\n\n{markdown_table(rows)}"
    paths["md"].write_text(md + (f"\nSplits:\n\n{legend}" if legend else ""))
    return paths


def training_plots(history: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """``loss_per_task.png`` (training loss per task per epoch) and ``val_metrics.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    paths = []
    for fname, prefix, title in (
        ("loss_per_task.png", "train/", "training loss per task"),
        ("val_metrics.png", "val/", "validation metrics per epoch"),
    ):
        keys = sorted(
            {k for h in history for k in h if k.startswith(prefix) and not k.endswith("/loss")}
            if prefix == "val/"
            else {k for h in history for k in h if k.startswith(prefix)}
        )
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in keys:
            ax.plot(epochs, [h.get(k, float("nan")) for h in history], marker="o", label=k.removeprefix(prefix))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if keys:
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        paths.append(out / fname)
    return paths
