"""Record tests/golden/search_100.json: the in-process SearchPipeline's answers to the 100 golden
requests (``serving_helpers.golden_specs``) over the seed-0 small catalogue and the tiny encoder.

Run once, before a refactor of the serving path (``.venv/bin/python -m tests.golden.make_search_100``
from the repository root);
``tests/test_search_golden.py`` recomputes and compares. Re-record only for an intended change of results.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tests.serving_helpers import golden_pipeline, golden_run, golden_specs, small_catalogue

HERE = Path(__file__).resolve().parent


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    specs = golden_specs(small_catalogue())
    with tempfile.TemporaryDirectory() as tmp:
        results = golden_run(golden_pipeline(Path(tmp)), specs)
    out = HERE / "search_100.json"
    out.write_text(json.dumps({"specs": specs, "results": results}, indent=1) + "\n")
    print(f"wrote {out}: {sum('error' not in r for r in results)} answers, {sum('error' in r for r in results)} errors")


if __name__ == "__main__":
    main()
