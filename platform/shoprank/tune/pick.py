"""``shoprank tune pick``: one point of a sweep's Pareto front, chosen by a preference over its
tasks, written as a training config that ``shoprank train`` accepts as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shoprank.files import atomic_write_text
from shoprank.train.config import parse_config
from shoprank.tune.front import read_front
from shoprank.tune.pareto import parse_prefer, preferred


def pick_point(sweep_dir: str | Path, prefer: str) -> tuple[dict[str, Any], dict[str, float]]:
    """The front point with the highest preference-weighted score, and the parsed preference."""
    front = read_front(sweep_dir)
    weights = parse_prefer(prefer, front["tasks"])
    points = front["points"]
    return points[preferred([p["scores"] for p in points], weights)], weights


def pick(sweep_dir: str | Path, prefer: str, out: str | Path) -> dict[str, Any]:
    """Write the chosen point's training config to ``out`` (validated first); return the point."""
    point, weights = pick_point(sweep_dir, prefer)
    cfg = parse_config(point["train_config"], f"{sweep_dir}: front point {point['trial']}")
    scores = ", ".join(f"{t}={v:.4f}" for t, v in point["scores"].items())
    header = (
        f"# Picked from the sweep in {sweep_dir} with --prefer "
        + ",".join(f"{t}={w:g}" for t, w in weights.items())
        + f"\n# trial {point['trial']}: validation scores {scores}\n#   shoprank train --config {out}\n"
    )
    atomic_write_text(Path(out), header + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return point
