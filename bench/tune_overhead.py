"""Ray Tune overhead and parallel gain: a sweep's wall time against its trials run serially.

    python bench/tune_overhead.py [--config configs/tune_tiny.yaml] [--trials 4] [--concurrency 2] [--quick]
                                  [--steps-per-epoch N] [--scheduler asha|fifo|pbt]

One run: (1) the sweep on Ray Tune (same search, ASHA, concurrency N) timed end to end;
(2) every trial of that sweep re-run serially in this process with the same weights and the
epochs it actually ran, timed. Prints ratios, not bare times:

- parallel gain     = Σ serial trial time / sweep wall time
- per-trial overhead = Σ in-Tune trial time / Σ serial trial time   (Ray scheduling, object
  store, reporting and checkpointing per trial, plus contention between concurrent trials)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from shoprank.tasks.examples import build_task_data
from shoprank.train.config import load_config
from shoprank.train.driver import init_training_ray
from shoprank.train.loop import frame_to_arrays, run_training
from shoprank.tune.config import load_tune_config
from shoprank.tune.driver import make_trainable, run_search
from shoprank.tune.trainable import trial_train_config, val_frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/tune_tiny.yaml")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 trials")
    ap.add_argument("--steps-per-epoch", type=int, default=None, help="longer (or shorter) trials than the config's")
    ap.add_argument("--scheduler", choices=["asha", "fifo", "pbt"], default=None, help="override the sweep's")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    n = 3 if args.quick else args.trials
    storage = tempfile.mkdtemp(prefix="shoprank-tune-bench-")
    cfg = load_tune_config(args.config).model_copy(
        update={"num_samples": n, "max_concurrent_trials": args.concurrency, "storage_path": storage, "baselines": []}
    )
    if args.scheduler:
        cfg = cfg.model_copy(update={"scheduler": args.scheduler})
    base = load_config(cfg.train_config)
    if args.steps_per_epoch:
        base = base.model_copy(update={"steps_per_epoch": args.steps_per_epoch})
    data = build_task_data(base)
    searched = [t for t in (cfg.search.tasks or list(base.tasks)) if t in base.tasks]
    init_training_ray(None, args.concurrency)

    t0 = time.perf_counter()
    grid = run_search(cfg, base, make_trainable(cfg, base, data), searched)
    sweep_wall = time.perf_counter() - t0
    in_tune = sum(float(r.metrics.get("time_total_s", 0.0)) for r in grid)

    torch.set_num_threads(1)  # as inside a trial
    serial = 0.0
    for r in grid:
        epochs = int(r.metrics.get("training_iteration", base.epochs))
        cfg_t = trial_train_config(base, cfg, r.config).model_copy(update={"epochs": epochs})
        train = {t: frame_to_arrays(data.split(t, "train").drop("split")) for t in cfg_t.tasks}
        t1 = time.perf_counter()
        run_training(cfg_t, train, val_frames(data, cfg_t), data.label_maps, log=None)
        serial += time.perf_counter() - t1

    print(
        f"sweep: {n} trials, concurrency {args.concurrency}, {os.cpu_count()} CPUs, config {args.config}, "
        f"{cfg.scheduler}, {base.epochs} epochs x {base.steps_per_epoch} steps"
    )
    print(f"  serial sum {serial:.0f}s, sweep wall {sweep_wall:.0f}s")
    print(f"  epochs per trial (ASHA):      {[int(r.metrics.get('training_iteration', 0)) for r in grid]}")
    print(f"  parallel gain  (serial sum / sweep wall):      {serial / sweep_wall:.2f}x")
    print(f"  Ray overhead   (in-Tune trial sum / serial sum): {in_tune / serial:.2f}x")
    print(f"  sweep wall / serial sum:                        {sweep_wall / serial:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
