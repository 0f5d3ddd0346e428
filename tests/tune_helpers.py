"""The tiny sweep config the tune tests start from (``configs/tune_tiny.yaml``), with overrides."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "configs" / "tune_tiny.yaml").read_text())


def tune_cfg(**over: object) -> dict:
    """A deep copy of BASE with dotted-key overrides (``tune_cfg(**{"search.low": 0.5})``)."""
    data = json.loads(json.dumps(BASE))
    for key, value in over.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return data
