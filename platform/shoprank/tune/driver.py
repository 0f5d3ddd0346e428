"""Loss-weight search on Ray Tune, with baselines on the same budget and a held-out verdict.

    python -m jobs.tune --config configs/tune.yaml [--out DIR]
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.tune --config configs/tune.yaml

1. Examples are built once on the driver (``shoprank.tasks.examples``) and shared with every trial.
2. The sweep: a ``Tuner`` over task loss weights (``shoprank.tune.space``), Optuna TPE search,
   ASHA early stopping on the declared composite objective; each trial runs the same
   ``run_training`` loop as ``jobs/train.py``. Running the same command again restores an
   interrupted sweep (``Tuner.restore``): finished trials are kept, unfinished ones resume.
3. Baselines on the same budget (full epochs): equal weights and learned uncertainty weighting.
4. The best tuned checkpoint and each baseline's best checkpoint are scored on the held-out
   test split with the same composite; the report says which won, by how much, task by task.

Outputs under OUT (default ``<storage_path>/<name>``): trials.csv/.md, weights_vs_objective.png,
best_config.yaml (accepted by ``jobs/train.py`` as it is), comparison.json/.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from shoprank.errors import ShoprankError
from shoprank.eval.tasks import task_metrics
from shoprank.files import atomic_write_text
from shoprank.model.checkpoint import load_checkpoint
from shoprank.tasks.examples import TaskData, build_task_data
from shoprank.train.config import TrainConfig, load_config, parse_config
from shoprank.tune.config import TuneConfig, load_tune_config
from shoprank.tune.objective import composite
from shoprank.tune.report import comparison_markdown, plot_weights, write_trials
from shoprank.tune.space import param_space
from shoprank.tune.trainable import BASELINE_KEY, run_trial, trial_train_config
from shoprank.yamlconfig import read_yaml


@dataclass
class SweepResult:
    out_dir: Path
    trials: pl.DataFrame
    comparison: dict[str, Any]
    best_config: Path
    wall_seconds: float


def make_trainable(tune_cfg: TuneConfig, base: TrainConfig, data: TaskData):  # noqa: ANN202
    from ray import tune

    fn = tune.with_parameters(
        run_trial,
        data=TaskData(data.examples, data.label_maps, data.fingerprints),
        base_config=base.model_dump(mode="json"),
        tune_config=tune_cfg.model_dump(mode="json"),
    )
    return tune.with_resources(fn, {"cpu": tune_cfg.cpus_per_trial, "gpu": tune_cfg.gpus_per_trial})


def _tuner(tune_cfg: TuneConfig, base: TrainConfig, trainable, name: str, space: dict[str, Any], searched: bool) -> Any:
    from ray import tune
    from ray.tune import CheckpointConfig, RunConfig
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    storage = Path(tune_cfg.storage_path).resolve()
    path = storage / name
    if tune.Tuner.can_restore(str(path)):
        print(f"restoring sweep from {path}")
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    search_alg = None
    if searched and tune_cfg.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=tune_cfg.seed)
    scheduler = (
        ASHAScheduler(
            max_t=base.epochs,
            grace_period=tune_cfg.asha.grace_period,
            reduction_factor=tune_cfg.asha.reduction_factor,
        )
        if searched
        else FIFOScheduler()
    )
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="objective",
            mode="max",
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=tune_cfg.num_samples if searched else 1,
            max_concurrent_trials=tune_cfg.max_concurrent_trials,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="objective", checkpoint_score_order="max"
            ),
            verbose=1,
        ),
    )


def _best_objective(result) -> float:  # noqa: ANN001 - ray.tune.Result
    df = result.metrics_dataframe
    if df is None or "objective" not in df:
        return float("nan")
    return float(df["objective"].max())


def _rows(results, tasks: list[str], max_t: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append(
            {
                "trial": label if label != "tuned" else (m.get("trial_id") or r.path.split("/")[-1]),
                "kind": label,
                "epochs": int(m.get("training_iteration", 0)),
                "stopped_by_asha": int(m.get("training_iteration", 0)) < max_t,
                "objective": float(m.get("objective", float("nan"))),
                "best_objective": _best_objective(r),
                "primary": float(m.get("primary", float("nan"))),
                **{f"weight/{t}": float(m.get(f"weight/{t}", float("nan"))) for t in tasks},
                "error": str(r.error).splitlines()[0] if r.error else "",
            }
        )
    return rows


HELD_OUT_ROWS = 2000  # per task: the same seeded sample for every checkpoint compared


def held_out(checkpoint_dir: str, data: TaskData, tasks: list[str], tune_cfg: TuneConfig) -> dict[str, Any]:
    """Test-split metrics of one checkpoint and its composite objective."""
    model, manifest = load_checkpoint(checkpoint_dir)
    flat: dict[str, float] = {}
    for t in tasks:
        df = data.split(t, "test").drop("split")
        if df.height > HELD_OUT_ROWS:
            df = df.sample(HELD_OUT_ROWS, seed=tune_cfg.seed)
        for k, v in task_metrics(model, t, df).items():
            if k != "loss":
                flat[f"test/{t}/{k}"] = float(v)
    return {
        "test_metrics": flat,
        "objective": composite(flat, tune_cfg.objective, "test/"),
        "checkpoint": checkpoint_dir,
        "weights": manifest.get("train_config", {}).get("tasks")
        and {t: c["weight"] for t, c in manifest["train_config"]["tasks"].items()},
        "weighting": manifest.get("train_config", {}).get("weighting"),
    }


def run_search(
    tune_cfg: TuneConfig, base: TrainConfig, trainable, searched: list[str], extra: dict[str, Any] | None = None
):  # noqa: ANN201 - ray.tune.ResultGrid
    """The weight search itself (Optuna + ASHA), restored if its storage holds an earlier run."""
    space = {**param_space(tune_cfg.search, searched), **(extra or {})}
    return _tuner(tune_cfg, base, trainable, tune_cfg.name, space, True).fit()


def run_baselines(tune_cfg: TuneConfig, base: TrainConfig, trainable, extra: dict[str, Any] | None = None) -> list:
    """Equal weights and uncertainty weighting on the full budget (no early stopping)."""
    from ray import tune

    if not tune_cfg.baselines:
        return []
    space = {BASELINE_KEY: tune.grid_search(list(tune_cfg.baselines)), **(extra or {})}
    return list(_tuner(tune_cfg, base, trainable, f"{tune_cfg.name}-baselines", space, False).fit())


def sweep(
    tune_cfg: TuneConfig,
    out: str | Path | None = None,
    *,
    address: str | None = None,
    start_log: str | None = None,
    log=print,
) -> SweepResult:
    """Run (or restore) the sweep and the baselines; write every output; return the verdict."""
    from shoprank.train.driver import init_training_ray

    t0 = time.perf_counter()
    base = load_config(tune_cfg.train_config)
    tasks = list(base.tasks)
    searched = [t for t in (tune_cfg.search.tasks or tasks) if t in tasks]
    if not searched:
        raise ShoprankError(f"search.tasks: none of {tune_cfg.search.tasks} is trained by {tune_cfg.train_config}")
    out_dir = Path(out or Path(tune_cfg.storage_path) / tune_cfg.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_task_data(base)
    init_training_ray(address, tune_cfg.max_concurrent_trials)
    trainable = make_trainable(tune_cfg, base, data)
    extra = {"_start_log": start_log} if start_log else {}

    grid = run_search(tune_cfg, base, trainable, searched, extra)
    baselines = run_baselines(tune_cfg, base, trainable, extra)

    rows = _rows(grid, tasks, base.epochs, "tuned")
    rows += [
        row | {"trial": r.config.get(BASELINE_KEY), "kind": "baseline"}
        for r, row in zip(baselines, _rows(baselines, tasks, base.epochs, "baseline"), strict=True)
    ]
    trials = pl.DataFrame(rows).sort(["kind", "best_objective"], descending=[True, True])
    write_trials(trials, out_dir)
    plot_weights(trials.filter(pl.col("kind") == "tuned"), tasks, out_dir)

    best = grid.get_best_result(metric="objective", mode="max", scope="all")
    best_ckpt = best.get_best_checkpoint("objective", "max")
    # Written with the training config's own (relative) paths, so it runs wherever that one does.
    as_written = parse_config(read_yaml(tune_cfg.train_config, "config"), tune_cfg.train_config)
    best_cfg = trial_train_config(as_written, tune_cfg, best.config)
    best_path = out_dir / "best_config.yaml"
    atomic_write_text(best_path, yaml.safe_dump(best_cfg.model_dump(mode="json"), sort_keys=False))

    runs = {"tuned": held_out(best_ckpt.path, data, tasks, tune_cfg)}
    for r in baselines:
        if r.error is None:
            runs[r.config[BASELINE_KEY]] = held_out(
                r.get_best_checkpoint("objective", "max").path, data, tasks, tune_cfg
            )
    base_scores = {n: v["objective"] for n, v in runs.items() if n != "tuned"}
    winner = max(runs, key=lambda n: runs[n]["objective"])
    margin = runs["tuned"]["objective"] - max(base_scores.values()) if base_scores else float("nan")
    comparison = {"winner": winner, "margin": margin, "runs": runs, "objective": tune_cfg.objective.model_dump()}
    atomic_write_text(out_dir / "comparison.json", json.dumps(comparison, indent=2, default=float))
    atomic_write_text(out_dir / "comparison.md", comparison_markdown(comparison))
    wall = time.perf_counter() - t0
    log(str(trials.select("trial", "kind", "epochs", "stopped_by_asha", "objective", "best_objective", "primary")))
    log(comparison_markdown(comparison))
    log(f"outputs in {out_dir} ({wall:.0f}s); best weights -> {best_path}")
    return SweepResult(out_dir, trials, comparison, best_path, wall)


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m jobs.tune", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="sweep YAML (see configs/tune*.yaml)")
    ap.add_argument("--out", default=None, help="output directory (default: <storage_path>/<name>)")
    ap.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    ap.add_argument("--start-log", default=None, help=argparse.SUPPRESS)  # tests: log each trial (re)start
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        res = sweep(load_tune_config(args.config), args.out, address=args.address, start_log=args.start_log)
    except ShoprankError as e:
        print(f"jobs.tune: error: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": str(res.out_dir),
                "winner": res.comparison["winner"],
                "margin": res.comparison["margin"],
                "best_config": str(res.best_config),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
