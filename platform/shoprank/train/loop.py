"""The multi-task training loop, one function for every runner.

``run_training`` is what a Ray Train worker runs (``ray_train_loop`` adapts it), what the
plain single-process benchmark runs, and what a Ray Tune trial wraps: it takes the data
already in memory, reports once per epoch through a callback, and writes a resumable
checkpoint every epoch: the model (``shoprank.model.save_checkpoint``) plus the training
state (``shoprank.train.state``). Nothing is ever pickled.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from shoprank.eval.tasks import task_metrics, validation_summary
from shoprank.model.checkpoint import save_checkpoint
from shoprank.model.features import item_numeric_features, month_features
from shoprank.model.lexical import lexical_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.registry import spec
from shoprank.model.text import title_of
from shoprank.train.config import TrainConfig
from shoprank.train.gradients import StepGradients
from shoprank.train.losses import MultiTaskObjective
from shoprank.train.sampler import batch_indices, step_tasks
from shoprank.train.state import load_resume, newest_checkpoint, save_train_state

ReportFn = Callable[[dict[str, Any], "str | None"], None]
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class EpochEnd:
    """What an epoch-end callback sees: called on every rank after the epoch's report."""

    epoch: int
    rank: int
    metrics: dict[str, Any]


EpochCallback = Callable[[EpochEnd], None]


@dataclass
class WorkerContext:
    """Where this copy of the loop runs. ``wrap`` turns the objective into its DDP form."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    wrap: Callable[[nn.Module], nn.Module] = field(default=lambda m: m)


# -- data ---------------------------------------------------------------------------------
def frame_to_arrays(df: pl.DataFrame) -> Arrays:
    """Column arrays of an examples frame, with numeric features computed once."""
    return {
        "query": np.asarray(df["query"].to_list(), dtype=object),
        "item": np.asarray(df["item"].to_list(), dtype=object),
        "item_id": np.asarray(df["item_id"].to_list(), dtype=object),
        "num": item_numeric_features(
            df["price"].fill_null(float("nan")).to_numpy(),
            df["rating"].fill_null(float("nan")).to_numpy(),
            df["popularity"].fill_null(0.0).to_numpy(),
        ),
        "month": month_features(df["month"].fill_null(0).to_numpy()),
        "label": df["label"].to_numpy().astype(np.float32),
    }


def make_batch(model: MultiTaskModel, task: str, a: Arrays, idx: np.ndarray, device: torch.device) -> dict[str, Any]:
    """Tokenised tensors for the sides this task needs (its spec's ``sides``)."""
    enc = model.encoder
    sides = spec(task).sides
    batch: dict[str, Any] = {"label": torch.as_tensor(a["label"][idx], device=device)}
    if sides in ("query", "pair"):
        t = enc.tokenize(a["query"][idx].tolist(), device)
        batch["q_ids"], batch["q_mask"] = t["input_ids"], t["attention_mask"]
    if sides in ("item", "pair"):
        t = enc.tokenize(a["item"][idx].tolist(), device)
        batch["i_ids"], batch["i_mask"] = t["input_ids"], t["attention_mask"]
        batch["num"] = torch.as_tensor(a["num"][idx], device=device)
        batch["month"] = torch.as_tensor(a["month"][idx], device=device)
        batch["item_keys"] = a["item_id"][idx].tolist()
    if task in model.lexical:  # the relevance output's exact-match term is trained with the tower
        titles = [title_of(t) for t in a["item"][idx].tolist()]
        batch["lexical"] = torch.as_tensor(lexical_features(a["query"][idx].tolist(), titles), device=device)
    return batch


# -- optimizer / schedule -----------------------------------------------------------------
def build_optimizer(objective: MultiTaskObjective, cfg: TrainConfig) -> torch.optim.Optimizer:
    enc = [p for p in objective.model.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc}
    heads = [p for p in objective.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = [
        {"params": enc, "lr": cfg.lr, "initial_lr": cfg.lr},
        {"params": heads, "lr": cfg.head_lr, "initial_lr": cfg.head_lr},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then linear decay to 10% at the last step."""
    total = max(1, cfg.epochs * cfg.steps_per_epoch)
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return 1.0 - 0.9 * frac


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, global_step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr_factor`` as a LambdaLR positioned at ``global_step`` (each group's lr = initial_lr x factor).

    Checkpoints written before the scheduler name the initial rate ``base_lr``; it is read as such.
    """
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g.pop("base_lr", g["lr"]))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg), last_epoch=global_step - 1)


# -- the loop -----------------------------------------------------------------------------
def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _broadcast(obj: Any, ctx: WorkerContext) -> Any:
    if ctx.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def run_training(
    cfg: TrainConfig,
    train: dict[str, Arrays],
    val: dict[str, pl.DataFrame],
    label_maps: dict[str, list[str]],
    *,
    report: ReportFn | None = None,
    ctx: WorkerContext | None = None,
    resume_from: str | Path | None = None,
    global_sizes: dict[str, int] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train for ``cfg.epochs`` epochs (or until early stopping); return the final progress.

    ``train`` holds this worker's shard per task (``frame_to_arrays``); ``val`` the full
    validation frames. ``report(metrics, checkpoint_dir)`` is called on every rank once per
    epoch; ``checkpoint_dir`` is a directory (rank 0 only) that must be consumed before the
    callback returns. Each of ``callbacks`` is then called with an :class:`EpochEnd` (tests
    inject faults this way).
    """
    ctx = ctx or WorkerContext()
    device = torch.device(ctx.device)
    torch.manual_seed(cfg.seed)
    model = MultiTaskModel(cfg.model, label_maps)
    init_trained: list[str] = []  # tasks whose heads a warm start brought in trained
    if cfg.init_from and resume_from is None:  # issue 19: warm start (shoprank.train.warm_start)
        from shoprank.train.warm_start import load_init_weights

        init_trained = sorted(set(load_init_weights(model, cfg.init_from)) & set(cfg.tasks))
    objective = MultiTaskObjective(model, cfg.weights(), cfg.weighting, cfg.encoder_grads()).to(device)
    optimizer = build_optimizer(objective, cfg)
    progress: dict[str, Any] = {
        "epoch": 0,
        "global_step": 0,
        "best": None,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "task_steps": {},
        "init_trained": init_trained,
        "stopped_early": False,
    }
    if resume_from is not None:
        progress.update({k: v for k, v in load_resume(resume_from, objective, optimizer, cfg).items() if k in progress})
        if log and ctx.rank == 0:
            log(f"resumed from {resume_from} after epoch {progress['epoch']}")
    scheduler = build_scheduler(optimizer, cfg, int(progress["global_step"]))
    wrapped = ctx.wrap(objective)
    sizes = global_sizes or {t: len(a["label"]) for t, a in train.items()}
    tasks = [t for t in cfg.tasks if sizes.get(t, 0) > 0]
    empty = [t for t in tasks if len(train.get(t, {}).get("label", [])) == 0]
    if empty:  # every rank must train the same task at each step (DDP), so every shard needs every task
        raise ValueError(f"rank {ctx.rank}: no training rows for task(s) {empty} in this worker's shard")
    es = cfg.early_stopping

    start_epoch = int(progress["epoch"]) + 1
    if progress.get("stopped_early"):
        start_epoch = cfg.epochs + 1
    params = [p for p in objective.parameters() if p.requires_grad]  # what a step updates and clips
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        objective.train()
        schedule = step_tasks(
            {t: sizes[t] for t in tasks},
            cfg.schedule,
            cfg.steps_per_epoch,
            cfg.seed,
            epoch,
            {t: cfg.tasks[t].sample_weight for t in tasks},
        )
        iters = {
            t: batch_indices(len(train[t]["label"]), cfg.batch_size, cfg.seed, epoch, ctx.rank, n)
            for n, t in enumerate(tasks)
        }
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        samples = 0
        conflicts = pairs = 0  # PCGrad: conflicting (task, other task) gradient pairs met
        for step in schedule:
            step_grads = StepGradients(cfg.grad_surgery) if len(step) > 1 else None
            for task in step:
                optimizer.zero_grad(set_to_none=True)
                idx = next(iters[task])
                batch = make_batch(model, task, train[task], idx, device)
                loss, raw = wrapped(task, batch)
                loss.backward()
                # each task's gradient is clipped on its own, as its single-task step would be,
                # then the step takes their sum or PCGrad's (a no-op for one-task schedules)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if step_grads is not None:
                    step_grads.add(params)
                sums[task] = sums.get(task, 0.0) + float(raw)
                counts[task] = counts.get(task, 0) + 1
                samples += len(idx)
            if step_grads is not None:
                combined, n_conflicts, n_pairs = step_grads.combined((cfg.seed, progress["global_step"]))
                conflicts += n_conflicts
                pairs += n_pairs
                for p, g in zip(params, combined, strict=True):
                    p.grad = g
            optimizer.step()
            scheduler.step()
            progress["global_step"] += 1
            done = progress["global_step"] - (epoch - 1) * cfg.steps_per_epoch
            if log and ctx.rank == 0 and done % max(1, cfg.steps_per_epoch // 5) == 0:
                log(f"epoch {epoch} step {done}/{cfg.steps_per_epoch} ({time.perf_counter() - t0:.0f}s)")
        train_time = time.perf_counter() - t0
        for t, c in counts.items():
            progress["task_steps"][t] = progress["task_steps"].get(t, 0) + c

        # Validation on rank 0, broadcast so every rank takes the same early-stopping decision.
        metrics: dict[str, Any] = {}
        if ctx.rank == 0:
            per_task = {t: task_metrics(model, t, df) for t, df in val.items() if t in tasks and not df.is_empty()}
            metrics = validation_summary(per_task, cfg.weights())
        metrics = _broadcast(metrics, ctx)
        metrics.update({f"train/{t}/loss": sums[t] / counts[t] for t in counts})
        metrics.update(
            {
                "epoch": epoch,
                "global_step": progress["global_step"],
                "train_loss": float(np.mean([sums[t] / counts[t] for t in counts])) if counts else float("nan"),
                "train_samples": samples * ctx.world_size,
                "train_seconds": train_time,
                "samples_per_s": samples * ctx.world_size / max(train_time, 1e-9),
                "task_steps": dict(counts),
            }
        )
        if pairs:
            metrics["train/pcgrad_conflict_fraction"] = conflicts / pairs
        if objective.uncertainty is not None:
            metrics.update({f"sigma/{t}": s for t, s in objective.uncertainty.sigmas().items()})
        value = float(metrics.get(es.metric, float("nan")))
        if _improved(value, progress["best"], es.mode, es.min_delta):
            progress["best"], progress["best_epoch"], progress["bad_epochs"] = value, epoch, 0
        else:
            progress["bad_epochs"] += 1
        stop = es.patience > 0 and progress["bad_epochs"] >= es.patience and epoch < cfg.epochs
        progress["stopped_early"] = bool(stop)
        progress["epoch"] = epoch
        progress["history"].append({k: v for k, v in metrics.items() if k != "task_steps"})
        metrics.update({"best_epoch": progress["best_epoch"], "stopped_early": bool(stop)})
        if log and ctx.rank == 0:
            shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float) and "/" not in k}
            log(f"epoch {epoch}/{cfg.epochs} {shown}")

        ckpt_dir = None
        if ctx.rank == 0:
            ckpt_dir = tempfile.mkdtemp(prefix=f"shoprank-epoch{epoch}-")
            stepped = {t for t, n in progress["task_steps"].items() if n > 0}
            trained = sorted(stepped | set(progress.get("init_trained", [])))
            if objective.uncertainty is not None:
                progress["log_vars"] = {f"log_var.{t}": float(p) for t, p in objective.uncertainty.log_vars.items()}
            save_checkpoint(
                model,
                ckpt_dir,
                trained_tasks=trained,
                extra={
                    "train_config": cfg.model_dump(mode="json"),
                    "metrics": {k: v for k, v in metrics.items() if k != "task_steps"},
                    "epoch": epoch,
                    **(manifest_extra or {}),
                },
            )
            save_train_state(Path(ckpt_dir), optimizer, progress)
        try:
            if report is not None:
                report(metrics, ckpt_dir)
        finally:
            if ckpt_dir is not None:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
        for callback in callbacks:
            callback(EpochEnd(epoch, ctx.rank, metrics))
        if stop:
            if log and ctx.rank == 0:
                log(f"early stopping after epoch {epoch}: {es.metric} did not improve for {es.patience} epoch(s)")
            break
    return progress


# -- Ray Train adapter ----------------------------------------------------------------------
def ray_train_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` for Ray Train: shards from Ray Data, DDP, checkpoints via report."""
    import ray.train
    import ray.train.torch
    from ray.data import DataContext
    from ray.train import Checkpoint

    DataContext.get_current().enable_progress_bars = False
    cfg = TrainConfig.model_validate(config["train_config"])
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    ctx_ray = ray.train.get_context()
    rank, world = ctx_ray.get_world_rank(), ctx_ray.get_world_size()
    device = ray.train.torch.get_device()

    def shard(name: str) -> pl.DataFrame:
        it = ray.train.get_dataset_shard(name)
        if it is None:
            return pl.DataFrame()
        tables = list(it.iter_batches(batch_size=8192, batch_format="pyarrow"))
        if not tables:
            return pl.DataFrame()
        import pyarrow as pa

        return pl.from_arrow(pa.concat_tables(tables))

    train_all, val_all = shard("train"), shard("val")
    train, val = {}, {}
    for t in cfg.tasks:
        if train_all.height:
            df = train_all.filter(pl.col("task") == t)
            if df.height:
                train[t] = frame_to_arrays(df)
        if val_all.height:
            vdf = val_all.filter(pl.col("task") == t)
            if vdf.height:
                val[t] = vdf
    # Two places to resume from: Ray's latest registered checkpoint (a retry inside this run)
    # and the newest complete epoch on disk (a re-run of the command). A fault right after a
    # report can land before Ray registers that report, so take whichever epoch is newer.
    ckpt = ray.train.get_checkpoint()
    resume_ctx = ckpt.as_directory() if ckpt is not None else None
    candidates = [resume_ctx.__enter__()] if resume_ctx is not None else []
    resume = newest_checkpoint([*candidates, config.get("resume_from")])

    def wrap(m: nn.Module) -> nn.Module:
        if world > 1:
            return ray.train.torch.prepare_model(
                m, move_to_device=True, parallel_strategy_kwargs={"find_unused_parameters": True}
            )
        return m.to(device)

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{metrics['epoch']:04d}")

    try:
        run_training(
            cfg,
            train,
            val,
            config["label_maps"],
            report=report,
            ctx=WorkerContext(rank=rank, world_size=world, device=str(device), wrap=wrap),
            resume_from=resume,
            global_sizes=config["train_sizes"],
            manifest_extra=config.get("manifest_extra"),
            callbacks=config.get("callbacks") or (),
            log=print if rank == 0 else None,
        )
    finally:
        if resume_ctx is not None:
            resume_ctx.__exit__(None, None, None)
