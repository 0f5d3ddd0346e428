"""Cross-encoder training on Ray Train (v2: ``ray.train.report``), from the multi-task sources.

    shoprank train-cross --config configs/cross_encoder.yaml --out runs/cross

The examples are the bi-encoder's own (``shoprank.tasks.examples.build_task_data``): Home Depot
graded pairs for ``relevance`` (query-hash split) and Best Buy clicks with sampled negatives for
``click`` (time split), so with the same ``split``/``seed`` as the reference config every test
query and test-period click is unseen here too. One worker (or DDP over several) runs
:func:`run_cross_training`: each step trains one task (drawn by ``sample_weight``, as the
``weighted`` schedule of ``shoprank.train.sampler``), every ``val_every`` steps it reports the
validation metrics, with a checkpoint (safetensors + manifest) when ``val_score`` improved, so
the run's last checkpoint is its best. The driver copies it to ``OUT/model``. No resume: a run
is minutes long; run the command again to retrain.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from shoprank.errors import CheckpointError, ShoprankError
from shoprank.eval import metrics as M
from shoprank.files import atomic_write_json, staged_dir
from shoprank.model.checkpoint import MANIFEST, WEIGHTS
from shoprank.model.cross_encoder import CROSS_TASKS, CrossEncoder, CrossEncoderConfig, save_cross_encoder
from shoprank.model.text import MANIFEST_KEY
from shoprank.tasks.config import DataConfig
from shoprank.tasks.examples import TaskData, build_task_data, val_frame
from shoprank.train.sampler import batch_indices, task_schedule
from shoprank.yamlconfig import read_yaml, validate_mapping

RUN_NAME = "cross"
ReportFn = Callable[[dict[str, Any], "str | None"], None]


class CrossTrainConfig(DataConfig):
    """Sources/tasks/split (``DataConfig``: keep them the reference's for the same splits), the
    cross-encoder's architecture and the optimisation settings."""

    model: CrossEncoderConfig = Field(default_factory=CrossEncoderConfig)
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=2, le=1024)
    lr: float = Field(3e-5, gt=0.0, le=1.0)
    head_lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, gt=0.0)
    val_every: int = Field(250, ge=1)
    num_workers: int = Field(1, ge=1, le=256)
    threads_per_worker: int = Field(2, ge=1, le=256)
    use_gpu: bool | Literal["auto"] = "auto"
    max_failures: int = Field(0, ge=-1)

    @model_validator(mode="after")
    def _check(self) -> CrossTrainConfig:
        other = [t for t in self.tasks if t not in CROSS_TASKS]
        if other:
            raise ValueError(f"tasks: the cross-encoder trains {list(CROSS_TASKS)} only, not {other}")
        tasks = [t for t in CROSS_TASKS if t in self.tasks]
        if self.model.tasks != tasks:
            self.model = self.model.model_copy(update={"tasks": tasks})
        return self


def load_cross_config(path: str | Path, base: str | Path | None = None) -> CrossTrainConfig:
    """Load and validate a cross-encoder YAML; relative data paths resolve against ``base`` (default: cwd)."""
    cfg = validate_mapping(CrossTrainConfig, read_yaml(path, "config"), str(path))
    return cfg.resolve_paths(Path(base) if base is not None else Path.cwd())  # type: ignore[return-value]


# -- the loop body ---------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, cfg: CrossTrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (backbone at ``lr``, heads at ``head_lr``) with linear warm-up then linear decay."""
    core = model.module if hasattr(model, "module") else model
    heads = [p for n, p in core.named_parameters() if not n.startswith("backbone.")]
    body = [p for n, p in core.named_parameters() if n.startswith("backbone.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}], weight_decay=cfg.weight_decay
    )

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return max(0.05, 1.0 - (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def task_loss(raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the logit: click labels are 0/1, relevance grades soft targets in 0..1."""
    return F.binary_cross_entropy_with_logits(raw.float(), labels.float())


def train_step(
    model: nn.Module,
    core: CrossEncoder,
    opt: torch.optim.Optimizer,
    sched: Any,
    task: str,
    queries: list[str],
    texts: list[str],
    labels: np.ndarray,
    grad_clip: float,
) -> float:
    """One optimiser step on one task's batch; returns the loss."""
    model.train()
    raw = model(**core.tokenize(queries, texts))[task]
    loss = task_loss(raw, torch.as_tensor(labels, device=raw.device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
    return float(loss.detach())


def validate(model: CrossEncoder, val: dict[str, pl.DataFrame]) -> dict[str, float]:
    """Per-task validation metrics and ``val_score`` (mean of relevance nDCG@10 and click AUC)."""
    out: dict[str, float] = {}
    parts = []
    for task, df in val.items():
        raw = model.score(df["query"].to_list(), df["item"].to_list())[task]
        y = df["label"].to_numpy()
        if task == "relevance":
            p = np.clip(raw, 1e-6, 1 - 1e-6)
            out["val/relevance/ndcg@10"] = M.mean_ndcg_at_k(df["group"].to_numpy(), y, raw, 10)
            out["val/relevance/rmse"] = M.rmse(y, raw)
            out["val/relevance/loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
            parts.append(out["val/relevance/ndcg@10"])
        else:
            out["val/click/auc"] = M.roc_auc(y, raw)
            out["val/click/loss"] = float(task_loss(torch.from_numpy(raw), torch.from_numpy(y.astype(np.float32))))
            parts.append(out["val/click/auc"])
    out["val_score"] = float(np.nanmean(parts)) if parts else float("nan")
    return out


def run_cross_training(
    cfg: CrossTrainConfig,
    train: dict[str, pl.DataFrame],
    val: dict[str, pl.DataFrame],
    report: ReportFn,
    *,
    rank: int = 0,
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
    device: str = "cpu",
    manifest_extra: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.steps`` steps; every ``val_every`` (and at the end) report metrics, with a saved
    checkpoint directory when ``val_score`` improved. Returns the last metrics."""
    torch.manual_seed(cfg.seed)
    core = CrossEncoder(cfg.model, seed=cfg.seed).to(device)
    model = wrap(core)
    opt, sched = make_optimizer(model, cfg)
    sizes = {t: df.height for t, df in train.items()}
    weights = {t: c.sample_weight for t, c in cfg.tasks.items()}
    schedule = task_schedule(sizes, "weighted", cfg.steps, cfg.seed, 0, weights)
    cols = {t: (df["query"].to_list(), df["item"].to_list(), df["label"].to_numpy()) for t, df in train.items()}
    draws = {t: batch_indices(n, cfg.batch_size, cfg.seed, 0, rank, salt) for salt, (t, n) in enumerate(sizes.items())}
    best, losses, t0 = -math.inf, {t: [] for t in train}, time.perf_counter()
    metrics: dict[str, Any] = {}
    for step, task in enumerate(schedule, start=1):
        idx = next(draws[task])
        q, x, y = cols[task]
        loss = train_step(model, core, opt, sched, task, [q[i] for i in idx], [x[i] for i in idx], y[idx],
                          cfg.grad_clip)  # fmt: skip
        losses[task].append(loss)
        if log and step % 50 == 0:
            log(f"step {step}/{cfg.steps} {task} loss {loss:.4f} ({time.perf_counter() - t0:.0f}s)")
        if step % cfg.val_every and step != cfg.steps:
            continue
        metrics = {"step": step, "seconds": time.perf_counter() - t0}
        metrics.update({f"train/{t}/loss": float(np.mean(v)) for t, v in losses.items() if v})
        metrics.update(validate(core, val))
        losses = {t: [] for t in train}
        improved = metrics["val_score"] > best
        best = max(best, metrics["val_score"])
        metrics["best_val_score"] = best
        if log:
            log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
        if improved and rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                save_cross_encoder(core, tmp, {**(manifest_extra or {}), "step": step, "metrics": metrics})
                report(metrics, tmp)
        else:
            report(metrics, None)
    return metrics


# -- Ray Train ---------------------------------------------------------------------------------------
def ray_cross_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: the examples from Ray Data shards, DDP over workers, ``ray.train.report``."""
    import pyarrow as pa
    import ray.train
    import ray.train.torch
    from ray.data import DataContext
    from ray.train import Checkpoint

    DataContext.get_current().enable_progress_bars = False
    cfg = CrossTrainConfig.model_validate(config["train_config"])
    torch.set_num_threads(cfg.threads_per_worker)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    def shard(name: str) -> dict[str, pl.DataFrame]:
        tables = list(ray.train.get_dataset_shard(name).iter_batches(batch_size=8192, batch_format="pyarrow"))
        df = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(df, pl.DataFrame)
        return {t: df.filter(pl.col("task") == t) for t in cfg.tasks if (df["task"] == t).any()}

    def wrap(m: nn.Module) -> nn.Module:
        if world > 1:
            return ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"find_unused_parameters": True})
        return m.to(device)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"step_{metrics['step']:06d}")

    run_cross_training(
        cfg, shard("train"), shard("val"), report, rank=rank, wrap=wrap, device=str(device),
        manifest_extra=config.get("manifest_extra"), log=print if rank == 0 else None,
    )  # fmt: skip


def manifest_extra(cfg: CrossTrainConfig, data: TaskData) -> dict[str, Any]:
    """What the saved cross-encoder's manifest records besides its weights: the config, the data's sizes and
    fingerprints, and the item-text recipes its examples were rendered with (``item_text``: serving renders
    the same ``pair`` texts, ``shoprank.model.cross_encoder.pair_recipe``)."""
    return {
        "train_config": cfg.model_dump(mode="json"),
        "data_sizes": data.sizes(),
        "data_fingerprints": data.fingerprints,
        MANIFEST_KEY: data.item_text_manifest(),
    }


def _frame(data: TaskData, cfg: CrossTrainConfig, split: str) -> pl.DataFrame:
    parts = []
    for t in cfg.tasks:
        df = data.split(t, "train").sample(fraction=1.0, shuffle=True, seed=cfg.seed) if split == "train" else (
            val_frame(data, t, cfg))  # fmt: skip
        parts.append(df.select("query", "item", "group", "label").with_columns(pl.lit(t).alias("task")))
    return pl.concat(parts)


def train_cross(
    cfg: CrossTrainConfig,
    out_dir: str | Path,
    *,
    address: str | None = None,
    data: TaskData | None = None,
    log: Callable[[str], None] = print,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Build the examples, run the TorchTrainer, copy the best checkpoint to ``OUT/model``; the summary."""
    import ray
    import ray.data
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from shoprank.train.driver import init_training_ray

    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = data or build_task_data(cfg)
    sizes = data.sizes()
    log(f"cross-encoder examples (train/val/test): { {t: tuple(s.values()) for t, s in sizes.items()} }")
    init_training_ray(address, cfg.num_workers)
    ray.data.DataContext.get_current().enable_progress_bars = False
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0 if cfg.use_gpu == "auto" else bool(cfg.use_gpu)
    trainer = TorchTrainer(
        ray_cross_loop,
        train_loop_config={
            "train_config": cfg.model_dump(mode="json"),
            "manifest_extra": manifest_extra(cfg, data),
        },
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(out_dir / "ray"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={
            "train": ray.data.from_arrow(_frame(data, cfg, "train").to_arrow()),
            "val": ray.data.from_arrow(_frame(data, cfg, "val").to_arrow()),
        },
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise CheckpointError(f"{out_dir}: cross-encoder training produced no checkpoint")
    model_dir = out_dir / "model"
    with result.checkpoint.as_directory() as src, staged_dir(model_dir) as tmp:
        for name in (WEIGHTS, MANIFEST):
            shutil.copy2(Path(src) / name, tmp / name)
    best = json.loads((model_dir / MANIFEST).read_text())
    summary = {
        "checkpoint": str(model_dir),
        "config": config_path,
        "best_step": best.get("step"),
        "best_metrics": best.get("metrics"),
        "last_metrics": dict(result.metrics or {}),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out_dir / "summary.json", summary, indent=2, default=float)
    log(f"best step {summary['best_step']} -> {model_dir} ({summary['wall_seconds']:.0f}s)")
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m shoprank.train.cross --config C --out D`` (what ``shoprank train-cross --submit`` runs)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m shoprank.train.cross", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--address", default=None)
    args = ap.parse_args(argv)
    try:
        cfg = load_cross_config(args.config)
        print(json.dumps(train_cross(cfg, args.out, address=args.address, config_path=args.config), default=float))
    except ShoprankError as e:
        print(f"shoprank.train.cross: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
