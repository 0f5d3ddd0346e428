"""The sample campaign that ``shoprank demo`` scores on the default catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoprank.campaign.runner import run_campaign
from shoprank.campaign.spec import load_spec, parse_spec

# The same campaign as campaigns/demo.yaml (a test keeps the two in step).
DEMO_SPEC = {
    "name": "demo",
    "season": "winter",
    "themes": ["warm winter clothing", "christmas gifts for kids"],
    "query_sets": {"cosy-home": ["blankets and throws", "scented candles", "hot chocolate"]},
    "segments": {"by": "category", "level": 1},
    "filters": {"in_stock": True},
    "blend": {"theme": 0.5, "season": 0.3, "demand": 0.1, "click": 0.1},
    "top_n": 20,
    "output": "out/demo-campaign",
}


def run_demo_campaign(
    catalogue_path: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    *,
    spec_path: str | Path | None = None,
    encoder: str = "minilm",
    shard_size: int = 1024,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Score the demo campaign (``campaigns/demo.yaml`` when given, else the built-in one).

    Writes under ``out_dir``, prints a short summary and returns the report's path. Other
    keyword arguments (``num_actors``, ``inner_batch_size``, ...) go to the campaign runner.
    """
    spec = load_spec(spec_path) if spec_path else parse_spec(DEMO_SPEC, "demo campaign")
    result = run_campaign(
        spec,
        catalogue_path,
        checkpoint=checkpoint,
        encoder=encoder,
        shard_size=shard_size,
        output=out_dir,
        progress=progress,
        **options,
    )
    assert result.report is not None
    print(
        f"campaign {spec.name}: {result.scored} of {result.rows} items scored "
        f"({result.quarantined} quarantined, {result.filtered} filtered) into {result.segments} segments; "
        f"zero-shot scores: {', '.join(result.zero_shot) or 'none'}\n"
        f"  report: {result.report}\n  ranked lists: {Path(out_dir) / 'ranked'}"
    )
    return result.report
