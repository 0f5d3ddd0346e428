"""Training throughput: Ray Train with 1 and 2 workers against a plain single-process loop.

Same model, same data, same loop function (``shoprank.train.loop.run_training``); samples/s
is measured by the loop itself over the training steps of each epoch (validation and
start-up excluded; first epoch dropped as warm-up when there are several), and printed as
ratios from this one run. End-to-end wall time (with Ray start-up) is printed alongside.

    python bench/train_throughput.py --quick      # tiny encoder, seconds of training
    python bench/train_throughput.py              # real MiniLM (configs/demo.yaml)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from shoprank.resources import DEMO_CONFIG

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _steady(history: list[dict]) -> float:
    rates = [h["samples_per_s"] for h in history]
    rates = rates[1:] if len(rates) > 1 else rates
    return sum(rates) / len(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny encoder and few steps")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch (default 20 quick / 30)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from shoprank.tasks.examples import build_task_data
    from shoprank.train.config import load_config
    from shoprank.train.driver import train
    from shoprank.train.loop import WorkerContext, frame_to_arrays, run_training

    cfg = load_config((REPO / "configs" / "tiny.yaml") if args.quick else DEMO_CONFIG, base=REPO)
    cfg = cfg.model_copy(
        update={
            "epochs": args.epochs,
            "steps_per_epoch": args.steps or (20 if args.quick else 30),
            "early_stopping": cfg.early_stopping.model_copy(update={"patience": 0}),
            "split": cfg.split.model_copy(update={"max_val_examples": 10}),
        }
    )
    data = build_task_data(cfg)
    results: dict[str, dict[str, float]] = {}

    # plain single-process loop: same function, no Ray, one thread (as each Ray worker gets)
    torch.set_num_threads(1)
    train_arrays = {t: frame_to_arrays(data.split(t, "train")) for t in cfg.tasks}
    val = {t: data.split(t, "val").head(10) for t in cfg.tasks}
    hist: list[dict] = []
    t0 = time.perf_counter()
    run_training(
        cfg, train_arrays, val, data.label_maps, report=lambda m, _d: hist.append(m), ctx=WorkerContext(), log=None
    )
    results["plain loop"] = {"samples_per_s": _steady(hist), "wall_s": time.perf_counter() - t0}

    import ray
    from shoprank.ray_runtime import init_ray

    init_ray(num_cpus=max(os.cpu_count() or 1, 3))
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = train(cfg, tmp, workers=n, data=data, log=lambda s: None)
            results[f"ray train x{n}"] = {"samples_per_s": _steady(res.history), "wall_s": time.perf_counter() - t0}
    ray.shutdown()

    base = results["plain loop"]["samples_per_s"]
    for r in results.values():
        r["ratio_vs_plain"] = r["samples_per_s"] / base
    summary = {
        "encoder": cfg.model.encoder,
        "batch_size_per_worker": cfg.batch_size,
        "steps_per_epoch": cfg.steps_per_epoch,
        "epochs": cfg.epochs,
        "cpus": os.cpu_count(),
        "results": results,
        "x2_vs_x1": results["ray train x2"]["samples_per_s"] / results["ray train x1"]["samples_per_s"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"encoder={cfg.encoder if hasattr(cfg, 'encoder') else cfg.model.encoder} batch/worker={cfg.batch_size} "
            f"steps/epoch={cfg.steps_per_epoch} epochs={cfg.epochs} cpus={os.cpu_count()}"
        )
        print(f"{'runner':<14} {'samples/s':>10} {'vs plain':>9} {'wall s':>8}")
        for name, r in results.items():
            print(f"{name:<14} {r['samples_per_s']:>10.1f} {r['ratio_vs_plain']:>8.2f}x {r['wall_s']:>8.1f}")
        print(f"2 workers vs 1 worker: {summary['x2_vs_x1']:.2f}x samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
