"""Seasonal campaign scoring: spec, per-batch scorer, per-segment ranking, report, job runner.

``CampaignSpec``/``load_spec``/``parse_spec`` import only pydantic and YAML; the runner (Ray,
torch) is imported on first use of ``run_campaign``/``CampaignRunner``/``CampaignResult``.
"""

from typing import Any

from shoprank.campaign.spec import CampaignSpec, load_spec, parse_spec

_LAZY = ("CampaignResult", "CampaignRunner", "run_campaign")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from shoprank.campaign import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'shoprank.campaign' has no attribute {name!r}")


__all__ = ["CampaignResult", "CampaignRunner", "CampaignSpec", "load_spec", "parse_spec", "run_campaign"]
