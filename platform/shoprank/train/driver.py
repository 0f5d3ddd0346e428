"""Multi-task fine-tuning on Ray Train (TorchTrainer, DDP), fed through Ray Data.

    python -m jobs.train --config configs/reference.yaml --out runs/ref [--workers 2]
    ray job submit --working-dir . -- python -m jobs.train --config configs/demo.yaml --out /tmp/demo

Examples are built on the driver with Polars (``shoprank.tasks.examples``), handed to Ray Data
via Arrow (one dataset per task; training sets split across workers, validation sets
broadcast), and trained by ``shoprank.train.loop.ray_train_loop`` on every worker. Each epoch
writes a checkpoint under ``OUT/ray/train/epoch_NNNN``; running the same command again after
a kill resumes from the newest complete checkpoint. The best epoch's model is copied to
``OUT/model`` and the history, Markdown table and plots to ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.errors import CheckpointError, ShoprankError
from shoprank.eval.report import training_plots
from shoprank.files import atomic_write_json, staged_dir
from shoprank.model.checkpoint import load_checkpoint, save_checkpoint
from shoprank.model.registry import CLASS_TASKS, REGRESSION_TASKS
from shoprank.model.text import MANIFEST_KEY as ITEM_TEXT_KEY
from shoprank.ray_runtime import init_ray
from shoprank.tasks.examples import TaskData, build_task_data, val_frame
from shoprank.train.config import TrainConfig, load_config
from shoprank.train.loop import EpochCallback, ray_train_loop
from shoprank.train.refit import refit_heads, refit_regression_towers
from shoprank.train.state import PROGRESS, read_train_state

RUN_NAME = "train"


@dataclass
class TrainResult:
    checkpoint: Path  # OUT/model: the best epoch's model
    out_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    wall_seconds: float

    def summary(self) -> str:
        """One JSON line: checkpoint, best epoch, epochs run, wall time."""
        return json.dumps(
            {
                "checkpoint": str(self.checkpoint),
                "best_epoch": self.best_epoch,
                "epochs": [h["epoch"] for h in self.history],
                "wall_seconds": round(self.wall_seconds, 1),
            }
        )


def epoch_checkpoints(out_dir: Path) -> list[Path]:
    """Complete epoch checkpoints under OUT/ray/train, oldest first (corrupt ones skipped)."""
    root = out_dir / "ray" / RUN_NAME
    found = []
    for d in sorted(root.glob("epoch_*")) if root.is_dir() else []:
        try:
            progress, _ = read_train_state(d)
        except CheckpointError:
            continue
        found.append((int(progress["epoch"]), d))
    return [d for _, d in sorted(found)]


def init_training_ray(address: str | None, workers: int) -> None:
    """The Ray that training and tuning run on: ``address`` / ``$RAY_ADDRESS``, else a local Ray
    with a CPU per worker plus one and the dashboard (Ray Train's placement-group cleaner asks the
    state API, served by the dashboard, every second whether the controller lives, and logs a
    warning each time it cannot)."""
    init_ray(address, num_cpus=max(os.cpu_count() or 1, workers + 1), dashboard=True, log_to_driver=True)


def _use_gpu(cfg: TrainConfig) -> bool:
    if cfg.use_gpu == "auto":
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(cfg.use_gpu)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    address: str | None = None,
    data: TaskData | None = None,
    callbacks: Sequence[EpochCallback] = (),
    log=print,
) -> TrainResult:
    """Build data, run the TorchTrainer (resuming if OUT holds checkpoints), export the best model.

    ``callbacks`` run on every worker after each epoch (``shoprank.train.loop.EpochEnd``); they
    travel to the workers pickled, so they must be picklable (tests inject faults with them).
    """
    import ray
    import ray.data
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    n_workers = workers or cfg.num_workers
    data = data or build_task_data(cfg)
    sizes = data.sizes()
    log(f"examples per task (train/val/test): { {t: tuple(s.values()) for t, s in sizes.items()} }")
    for t, s in sizes.items():
        if s["train"] < 2 * n_workers:
            raise ShoprankError(f"tasks.{t}: only {s['train']} training examples for {n_workers} workers")
    init_training_ray(address, n_workers)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    # One Arrow table per role (a "task" column says which task a row trains): the training
    # set is split across workers, the validation set goes whole to every worker.
    # Shuffled so that every worker's shard holds every task in proportion.
    train_df = pl.concat(
        [data.split(t, "train").drop("split").with_columns(pl.lit(t).alias("task")) for t in cfg.tasks]
    ).sample(fraction=1.0, shuffle=True, seed=cfg.seed)
    val_df = pl.concat([val_frame(data, t, cfg).drop("split").with_columns(pl.lit(t).alias("task")) for t in cfg.tasks])
    datasets = {"train": ray.data.from_arrow(train_df.to_arrow()), "val": ray.data.from_arrow(val_df.to_arrow())}
    existing = epoch_checkpoints(out_dir)
    resume_from = str(existing[-1]) if existing else None
    if resume_from:
        log(f"resuming from {resume_from}")
    loop_config = {
        "train_config": cfg.model_dump(mode="json"),
        "label_maps": data.label_maps,
        "train_sizes": {t: s["train"] for t, s in sizes.items()},
        "resume_from": resume_from,
        "callbacks": list(callbacks),
        # the item text recipes the examples were built with (shoprank.model.text), for every later path
        "manifest_extra": {"data_fingerprints": data.fingerprints, "data_sizes": sizes,
                           ITEM_TEXT_KEY: data.item_text_manifest()},  # fmt: skip
        "threads_per_worker": 1,
    }
    trainer = TorchTrainer(
        ray_train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=n_workers, use_gpu=_use_gpu(cfg)),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(out_dir / "ray"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=None),
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    trainer.fit()
    return export(cfg, out_dir, time.perf_counter() - t0, log, data=data)


def _refit(cfg: TrainConfig, model_dir: Path, data: TaskData, log) -> None:
    """Optional head refit of the exported model (config ``head_refit``), in place."""
    model, manifest = load_checkpoint(model_dir)
    tasks = [t for t in CLASS_TASKS if t in data.examples]
    report = refit_heads(
        model,
        {t: data.split(t, "train") for t in tasks},
        {t: val_frame(data, t, cfg) for t in tasks},
        max_examples=cfg.head_refit.max_examples,
        steps=cfg.head_refit.steps,
        lr=cfg.head_refit.lr,
        seed=cfg.seed,
        log=log,
    )
    pair = [t for t in REGRESSION_TASKS if t in data.examples]
    report.update(
        refit_regression_towers(
            model,
            {t: data.split(t, "train") for t in pair},
            {t: val_frame(data, t, cfg) for t in pair},
            max_examples=cfg.head_refit.regression_max_examples,
            seed=cfg.seed,
            log=log,
        )
    )
    core = {
        "format",
        "format_version",
        "model_config",
        "label_maps",
        "trained_tasks",
        "weights_sha256",
        "code_version",
        "created_at",
    }
    extra = {k: v for k, v in manifest.items() if k not in core}
    extra["head_refit"] = report
    save_checkpoint(model, model_dir, trained_tasks=manifest["trained_tasks"], extra=extra)


def export(cfg: TrainConfig, out_dir: Path, wall: float, log=print, data: TaskData | None = None) -> TrainResult:
    """Copy the best epoch's model to OUT/model and write history + report."""
    ckpts = epoch_checkpoints(out_dir)
    if not ckpts:
        raise CheckpointError(f"{out_dir}: training produced no checkpoint")
    last = json.loads((ckpts[-1] / PROGRESS).read_text())
    best_epoch = int(last.get("best_epoch") or last["epoch"])
    best = next((d for d in ckpts if json.loads((d / PROGRESS).read_text())["epoch"] == best_epoch), ckpts[-1])
    model_dir = out_dir / "model"
    with staged_dir(model_dir) as tmp:  # OUT/model is always a complete model, old or new
        for name in ("model.safetensors", "manifest.json"):
            shutil.copy2(best / name, tmp / name)
        if cfg.head_refit.enabled:
            _refit(cfg, tmp, data or build_task_data(cfg), log)
    history = last["history"]
    summary = {
        "checkpoint": str(model_dir),
        "best_epoch": best_epoch,
        "epochs_run": [h["epoch"] for h in history],
        "stopped_early": bool(last.get("stopped_early")),
        "early_stopping_metric": cfg.early_stopping.metric,
        "best_value": last.get("best"),
        "wall_seconds": wall,
        "history": history,
    }
    atomic_write_json(out_dir / "history.json", summary, indent=2, default=float)
    try:
        training_plots(history, out_dir)
    except Exception as e:  # noqa: BLE001 - plots are a convenience, never fail a finished run
        log(f"warning: could not draw training plots ({e})")
    log(f"best epoch {best_epoch} -> {model_dir} ({wall:.0f}s)")
    return TrainResult(model_dir, out_dir, history, best_epoch, bool(last.get("stopped_early")), wall)


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="training YAML (see configs/)")
    ap.add_argument("--out", required=True, help="output directory (checkpoints, model, history)")
    ap.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: config num_workers)")
    ap.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        res = train(cfg, args.out, workers=args.workers, address=args.address)
    except ShoprankError as e:
        print(f"jobs.train: error: {e}", file=sys.stderr)
        return 2
    print(res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
