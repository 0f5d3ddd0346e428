"""The sweep's Pareto front: which weight sets no other trial beats on every task, as
``front.json`` (what ``shoprank tune pick`` reads), ``front.md`` and ``front.png``.

A point is a tuned trial's per-task validation scores at the end of its budget; only trials that
ran the full budget are compared (an ASHA-stopped trial had less training, not worse weights).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shoprank.errors import ConfigError
from shoprank.files import atomic_write_text
from shoprank.tune.pareto import non_dominated

FORMAT = "shoprank-tune-front"
FORMAT_VERSION = 1
FRONT_JSON = "front.json"


def build_front(points: list[dict[str, Any]], tasks: list[str], max_t: int) -> dict[str, Any]:
    """Split full-budget ``points`` ({trial, epochs, scores, weights, ...}) into the front and the rest."""
    full = [p for p in points if p["epochs"] >= max_t]
    keep = set(non_dominated([[p["scores"].get(t, math.nan) for t in tasks] for p in full]))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tasks": tasks,
        "points": [p for i, p in enumerate(full) if i in keep],
        "dominated": [p for i, p in enumerate(full) if i not in keep],
        "short_trials": len(points) - len(full),
    }


def read_front(sweep_dir: str | Path) -> dict[str, Any]:
    """A sweep's ``front.json``; ConfigError naming the problem."""
    path = Path(sweep_dir) / FRONT_JSON
    if not path.is_file():
        raise ConfigError(f"--sweep {sweep_dir}: no {FRONT_JSON} (not a finished sweep's output directory)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: not a shoprank sweep front (format {FORMAT!r} v{FORMAT_VERSION})")
    return doc


def _f(v: float) -> str:
    return "nan" if v is None or math.isnan(v) else f"{v:.4f}"


def front_markdown(front: dict[str, Any]) -> str:
    """The non-dominated weight sets, best composite first, with their task scores and weights."""
    tasks = front["tasks"]
    weights = sorted({w for p in front["points"] for w in p["weights"]})
    lines = [
        f"Pareto front over {', '.join(tasks)} (validation scores at the full budget; higher is better): "
        f"{len(front['points'])} non-dominated of {len(front['points']) + len(front['dominated'])} full-budget "
        f"trials ({front['short_trials']} stopped early, not compared).",
        "",
        "| trial | " + " | ".join(f"score/{t}" for t in tasks) + " | objective | "
        + " | ".join(f"w[{w}]" for w in weights) + " |",
        "| --- " * (2 + len(tasks) + len(weights)) + "|",
    ]  # fmt: skip
    for p in sorted(front["points"], key=lambda p: -p.get("objective", 0.0)):
        lines.append(
            f"| {p['trial']} | " + " | ".join(_f(p["scores"].get(t, math.nan)) for t in tasks)
            + f" | {_f(p.get('objective', math.nan))} | "
            + " | ".join(_f(p["weights"].get(w, math.nan)) for w in weights) + " |"
        )  # fmt: skip
    for name, scores in front.get("reference", {}).items():
        learned = "learned" if name == "uncertainty" else "1.0000"
        cells = [f"*{name}*", *(_f(scores.get(t, math.nan)) for t in tasks), "", *(learned for _ in weights)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Pick one: `shoprank tune pick --sweep DIR --prefer " + ",".join(f"{t}=…" for t in tasks[:2])
              + " --out picked.yaml`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_front(front: dict[str, Any], out: Path) -> Path | None:
    """``front.png``: the first two tasks' scores (front joined, dominated grey, references as
    stars) beside every task's score of each front point (parallel coordinates). None without
    matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = front["tasks"]
    x, y = tasks[0], tasks[1]
    fig, (ax, par) = plt.subplots(1, 2, figsize=(10, 4))
    dom = front["dominated"]
    ax.scatter([p["scores"][x] for p in dom], [p["scores"][y] for p in dom], c="0.7", s=18, label="dominated")
    pts = sorted(front["points"], key=lambda p: p["scores"][x])
    xs, ys = [p["scores"][x] for p in pts], [p["scores"][y] for p in pts]
    ax.plot(xs, ys, "o-", c="C0", label="non-dominated (all tasks)")
    for name, scores in front.get("reference", {}).items():
        ax.scatter([scores.get(x, math.nan)], [scores.get(y, math.nan)], marker="*", s=120, label=name)
    ax.set_xlabel(f"score/{x} (val)")
    ax.set_ylabel(f"score/{y} (val)")
    ax.legend(fontsize=8)
    for i, p in enumerate(front["points"]):
        par.plot(range(len(tasks)), [p["scores"].get(t, math.nan) for t in tasks], "o-", c=f"C{i % 10}", lw=1)
    par.set_xticks(range(len(tasks)), tasks, rotation=30)
    par.set_ylabel("score (val)")
    par.set_title("non-dominated weight sets")
    fig.tight_layout()
    path, tmp = out / "front.png", out / ".front.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_front(front: dict[str, Any], out: Path) -> None:
    """``front.json``, ``front.md`` and (with matplotlib) ``front.png``."""
    atomic_write_text(out / FRONT_JSON, json.dumps(front, indent=2, default=float))
    atomic_write_text(out / "front.md", front_markdown(front))
    if len(front["tasks"]) >= 2 and front["points"]:
        plot_front(front, out)
