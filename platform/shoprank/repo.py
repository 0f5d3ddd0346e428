"""The repository root: where ``jobs/``, ``deployments/`` and ``configs/`` live, next to ``platform/``."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def ensure_repo_on_path() -> None:
    """Make ``jobs`` and ``deployments`` (outside the installed ``shoprank`` package) importable."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
