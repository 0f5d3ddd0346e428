"""A real loss-weight sweep on a local Ray Tune: ASHA, outputs (front and compute included), best
config, restore after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from shoprank.train.config import load_config, parse_config
from shoprank.tune.config import parse_tune_config

from tests.tune_helpers import BASE, REPO
from tests.tune_helpers import tune_cfg as _cfg


def _kill_after_trials(cmd: list[str], starts: Path, n_started: int, timeout_s: float = 600) -> None:
    """Run ``cmd`` in its own session and SIGKILL it (and its local Ray) once ``n_started``
    trials have started, i.e. (with one trial at a time) ``n_started - 1`` have finished."""
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="1", RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if starts.exists() and len(starts.read_text().split()) >= n_started:
                time.sleep(3)  # let Tune write its experiment state once more
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_tiny_sweep_asha_outputs_best_config_and_restore(ray_local: None, tmp_path: Path) -> None:
    from shoprank.tune.driver import sweep

    data = _cfg(storage_path=str(tmp_path / "store"), num_samples=4, max_concurrent_trials=1, baseline_seeds=2)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(data))
    starts = tmp_path / "starts.log"
    out = tmp_path / "out"

    # A real sweep process is killed while its third trial runs (two have finished).
    _kill_after_trials(
        [
            sys.executable,
            "-m",
            "shoprank.tune.driver",
            "--config",
            str(config_path),
            "--out",
            str(out),
            "--start-log",
            str(starts),
        ],
        starts,
        n_started=3,
    )
    first = starts.read_text().split()
    assert len(first) >= 3, "the sweep was killed before two trials finished"
    finished_before = first[:2]

    # The same sweep again restores from its storage and finishes.
    res = sweep(parse_tune_config(data), out, start_log=str(starts))
    all_starts = starts.read_text().split()
    for trial in finished_before:
        assert all_starts.count(trial) == 1, f"finished trial {trial} was run again after restore"

    trials = pl.read_csv(out / "trials.csv")
    tuned = trials.filter(pl.col("kind") == "tuned")
    assert tuned.height == 4
    assert set(trials.filter(pl.col("kind") == "baseline")["trial"]) == {
        "equal",
        "uncertainty",
        "equal~1",
        "uncertainty~1",
        "tuned~1",  # the chosen weights again, on the next seed
    }
    # ASHA stopped at least one trial before the full budget; baselines always get it.
    max_epochs = load_config(BASE["train_config"]).epochs
    assert tuned["epochs"].min() < max_epochs
    assert (trials.filter(pl.col("kind") == "baseline")["epochs"] == max_epochs).all()

    # Outputs: table, plot, comparison, and a best config that training accepts as it is.
    for name in ("trials.csv", "trials.md", "weights_vs_objective.png", "comparison.json", "comparison.md"):
        assert (out / name).stat().st_size > 0, name
    # The Pareto front: only full-budget trials, each with the config that reproduces its weights.
    front = json.loads((out / "front.json").read_text())
    assert front["points"] and all(p["epochs"] == max_epochs for p in front["points"])
    assert len(front["points"]) + len(front["dominated"]) + front["short_trials"] == tuned.height
    assert set(front["reference"]) == {"equal", "uncertainty"}
    for p in front["points"]:
        assert parse_config(p["train_config"]).tasks["click"].weight == pytest.approx(p["weights"]["click"])
    best = load_config(res.best_config)
    best_row = tuned.sort("best_objective", descending=True).row(0, named=True)
    again = trials.filter(pl.col("trial") == "tuned~1").row(0, named=True)
    for task, tc in best.tasks.items():
        assert tc.weight == pytest.approx(best_row[f"weight/{task}"], rel=1e-6)
        assert again[f"weight/{task}"] == pytest.approx(tc.weight, rel=1e-6)
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison["runs"]) == {"tuned", "equal", "uncertainty"}
    assert comparison["winner"] in comparison["runs"]
    # Compute honesty: every trial's time accounted at 1 CPU, priced in equal-weights runs.
    search = comparison["compute"]["search"]
    assert search["trials"] == 4 and search["trial_seconds"] > 0
    assert search["cpu_hours"] == pytest.approx(search["trial_seconds"] / 3600) and search["gpu_hours"] == 0
    assert search["equivalent_seeds"] > 0
    seeds = comparison["seed_spread"]
    assert seeds["kinds"] == {"tuned": ["tuned", "tuned~1"], "equal": ["equal", "equal~1"],
                              "uncertainty": ["uncertainty", "uncertainty~1"]}  # fmt: skip
    assert seeds["rows"]["objective"]["by_kind"]["tuned"]["std"] >= 0
