"""Compute honesty: what a sweep cost, what the same compute buys in equal-weights seeds, and
whether a tuned gain stands out of the equal-weights seed spread."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ComputeUsed:
    """Trial wall time × resources per trial, and its price in equal-weights runs."""

    trials: int
    trial_seconds: float  # Σ of every trial's iteration times (re-run iterations included)
    cpu_hours: float
    gpu_hours: float
    seed_run_seconds: float  # one full equal-weights run (mean over its seeds); NaN if none ran
    equivalent_seeds: float  # trial_seconds / seed_run_seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_used(
    trial_seconds: Sequence[float], cpus_per_trial: float, gpus_per_trial: float, seed_run_seconds: float | None
) -> ComputeUsed:
    """Account ``trial_seconds`` (one entry per trial) at the sweep's per-trial resources."""
    total = float(sum(s for s in trial_seconds if not math.isnan(s)))
    per_seed = float(seed_run_seconds) if seed_run_seconds and seed_run_seconds > 0 else math.nan
    return ComputeUsed(
        trials=len(trial_seconds),
        trial_seconds=total,
        cpu_hours=total * cpus_per_trial / 3600.0,
        gpu_hours=total * gpus_per_trial / 3600.0,
        seed_run_seconds=per_seed,
        equivalent_seeds=total / per_seed if not math.isnan(per_seed) else math.nan,
    )


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN std under two values)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan


def beyond_2sigma(gain: float, std: float) -> bool:
    """Whether ``gain`` stands out of twice the seed std (identical runs, std 0, are not a gain)."""
    return abs(gain) > max(2 * std, 1e-9)


def verdict(gain: float, std: float) -> str:
    """How a gain over equal weights compares with twice the equal-weights seed std."""
    if math.isnan(gain):
        return "not measured"
    if math.isnan(std):
        return "seed spread not measured (baseline_seeds: 1)"
    if beyond_2sigma(gain, std):
        return f"beyond 2σ ({2 * std:.4f})"
    return f"within 2σ ({2 * std:.4f}): seed noise"
