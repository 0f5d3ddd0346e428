"""Compute honesty of a sweep report (no Ray): hours, the price in equal-weights seeds, and the
verdict of a tuned gain against the equal-weights seed spread."""

from __future__ import annotations

import math

import pytest
from shoprank.tune.compute import compute_used, spread, verdict
from shoprank.tune.report import compute_lines, seed_lines


def test_compute_used_prices_trials_in_hours_and_seeds() -> None:
    c = compute_used([1800.0, 900.0, 900.0, math.nan], cpus_per_trial=2.0, gpus_per_trial=0.5, seed_run_seconds=600.0)
    assert c.trials == 4
    assert c.trial_seconds == pytest.approx(3600.0)
    assert c.cpu_hours == pytest.approx(2.0)
    assert c.gpu_hours == pytest.approx(0.5)
    assert c.equivalent_seeds == pytest.approx(6.0)
    unpriced = compute_used([60.0], 1.0, 0.0, None)
    assert math.isnan(unpriced.equivalent_seeds) and unpriced.gpu_hours == 0.0
    lines = "\n".join(compute_lines({"search": c.as_dict(), "baselines": unpriced.as_dict(), "scheduler": "pbt"}))
    assert "**6.0** equal-weights runs" in lines and "| search | 4 | 1.000 | 2.000 | 0.500 |" in lines


def test_spread_and_verdict_against_twice_the_std() -> None:
    mean, std = spread([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02)
    assert math.isnan(spread([0.7])[1]) and math.isnan(spread([])[0])
    assert verdict(0.05, 0.02).startswith("beyond 2σ")
    assert verdict(-0.05, 0.02).startswith("beyond 2σ")
    assert "seed noise" in verdict(0.03, 0.02)
    assert "seed noise" in verdict(1e-17, 0.0)  # identical runs are not a gain
    assert "not measured" in verdict(0.03, math.nan)
    rows = {"objective": {"mean": 0.72, "std": 0.02, "gain": 0.05, "verdict": verdict(0.05, 0.02)}}
    table = "\n".join(seed_lines({"seeds": ["equal", "equal~1", "equal~2"], "rows": rows}))
    assert "3 seed(s)" in table and "| objective | 0.7200 | 0.0200 | +0.0500 | beyond 2σ" in table
