"""Seasonal campaign scoring: spec, per-batch scorer, per-segment ranking, report, job runner."""

from shoprank.campaign.runner import CampaignResult, CampaignRunner, run_campaign
from shoprank.campaign.spec import CampaignSpec, load_spec, parse_spec

__all__ = ["CampaignResult", "CampaignRunner", "CampaignSpec", "load_spec", "parse_spec", "run_campaign"]
