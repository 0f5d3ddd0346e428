"""Ray job entrypoints, each runnable as ``python -m jobs.<name>`` or via ``ray job submit``.

When shoprank is not installed (a bare ``ray job submit --working-dir .``), the source root
``platform/`` next to this folder is put on the path so ``import shoprank`` still works.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("shoprank") is None:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
