"""Compute honesty of a sweep report (no Ray): hours, the price in equal-weights seeds, and the
verdict of a tuned gain against the equal-weights seed spread."""

from __future__ import annotations

import math

import pytest
from shoprank.tune.compute import compute_used, spread, verdict
from shoprank.tune.driver import seed_gains
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


def test_seed_gains_compare_the_tuned_mean_with_equal_weights() -> None:
    def run(obj: float, auc: float) -> dict:
        return {"objective": obj, "test_metrics": {"test/click/auc": auc}}

    seeds = seed_gains(
        {
            "tuned": {"tuned": run(0.78, 0.90), "tuned~1": run(0.76, 0.92), "tuned~2": run(0.77, 0.91)},
            "equal": {"equal": run(0.70, 0.91), "equal~1": run(0.72, 0.90), "equal~2": run(0.74, 0.92)},
            "uncertainty": {"uncertainty": run(0.71, 0.90)},
        }
    )
    obj = seeds["rows"]["objective"]
    assert obj["mean"] == pytest.approx(0.72) and obj["std"] == pytest.approx(0.02)
    assert obj["gain"] == pytest.approx(0.05) and obj["verdict"].startswith("beyond 2σ")  # tuned mean 0.77
    assert (
        seeds["rows"]["test/click/auc"]["gain"] == pytest.approx(0.0)
        and "seed noise" in (seeds["rows"]["test/click/auc"]["verdict"])
    )
    assert seeds["kinds"]["tuned"] == ["tuned", "tuned~1", "tuned~2"]
    table = "\n".join(seed_lines(seeds))
    assert "equal 3" in table and "tuned 3" in table and "uncertainty 1" in table
    assert "| objective | 0.7200 ± 0.0200 | 0.7100 ± nan | 0.7700 ± 0.0100 | +0.0500 | beyond 2σ" in table
    assert seed_gains({"equal": {"equal": run(0.7, 0.9)}})["rows"] == {}  # nothing tuned: no verdict
