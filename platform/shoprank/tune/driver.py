"""Loss-weight search on Ray Tune, with baselines on the same budget and a held-out verdict.

    python -m jobs.tune --config configs/tune.yaml [--out DIR]
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.tune --config configs/tune.yaml

1. Examples are built once on the driver (``shoprank.tasks.examples``) and shared with every trial.
2. The sweep: a ``Tuner`` over task loss weights (``shoprank.tune.space``); Optuna TPE search
   (multi-objective over per-task scores with ``pareto.search``) under ASHA early stopping or
   FIFO, or population-based training mutating the weights during training
   (``shoprank.tune.schedulers``); each trial runs the same ``run_training`` loop as
   ``jobs/train.py``, optionally warm-started from one checkpoint (``init_from``) with a frozen
   encoder. Running the same command again restores an interrupted sweep (``Tuner.restore``):
   finished trials are kept, unfinished ones resume.
3. Baselines on the same budget (full epochs): equal weights and learned uncertainty weighting,
   and the search's chosen weights re-trained, each on ``baseline_seeds`` seeds.
4. The best tuned checkpoint and each baseline's best checkpoint are scored on the held-out
   test split with the same composite; the report says which won, by how much, task by task,
   how the gain compares with the equal-weights seed spread, and what the sweep cost.

Outputs under OUT (default ``<storage_path>/<name>``): trials.csv/.md, weights_vs_objective.png,
best_config.yaml (accepted by ``jobs/train.py`` as it is), comparison.json/.md, and the Pareto
front front.json/.md/.png (``shoprank tune pick`` reads front.json).
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
from shoprank.tune.compute import compute_used, spread, verdict
from shoprank.tune.config import TuneConfig, load_tune_config
from shoprank.tune.front import build_front, write_front
from shoprank.tune.objective import composite
from shoprank.tune.report import comparison_markdown, plot_weights, write_trials
from shoprank.tune.schedulers import OBJECTIVE, PBT_CHECKPOINTS, build_scheduler, build_search_alg, score_key
from shoprank.tune.space import param_space
from shoprank.tune.trainable import (
    BASELINE_KEY,
    TUNED,
    TUNED_WEIGHTS_KEY,
    baseline_names,
    baseline_seed,
    run_trial,
    trial_train_config,
    tuned_seed_names,
    weights_train_config,
)
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


def _tuner(
    tune_cfg: TuneConfig, base: TrainConfig, trainable, name: str, space: dict[str, Any], searched: list[str] | None
) -> Any:
    """The search (``searched``: its tasks; scheduler and search algorithm from the config) or,
    with ``searched=None``, a plain grid (the baselines), restored when its storage holds one."""
    from ray import tune
    from ray.tune import CheckpointConfig, RunConfig
    from ray.tune.schedulers import FIFOScheduler

    storage = Path(tune_cfg.storage_path).resolve()
    path = storage / name
    pbt = searched is not None and tune_cfg.scheduler == "pbt"
    if tune.Tuner.can_restore(str(path)):
        print(f"restoring sweep from {path}")
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=build_search_alg(tune_cfg) if searched is not None else None,
            scheduler=build_scheduler(tune_cfg, base.epochs, searched) if searched is not None else FIFOScheduler(),
            num_samples=tune_cfg.num_samples if searched is not None else 1,
            max_concurrent_trials=tune_cfg.max_concurrent_trials,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            # PBT: stop at the budget before the scheduler sees the last epoch, so no member copies
            # another's checkpoint at the very end and leaves with weights it never trained with
            stop={"training_iteration": base.epochs} if pbt else None,
            checkpoint_config=CheckpointConfig(
                num_to_keep=PBT_CHECKPOINTS if pbt else 2,
                checkpoint_score_attribute=OBJECTIVE,
                checkpoint_score_order="max",
            ),
            verbose=1,
        ),
    )


def _best_objective(result) -> float:  # noqa: ANN001 - ray.tune.Result
    df = result.metrics_dataframe
    if df is None or "objective" not in df:
        return float("nan")
    return float(df["objective"].max())


def _trial_seconds(result) -> float:  # noqa: ANN001 - ray.tune.Result
    """Compute a trial used: the sum of its iterations' times (re-run iterations included)."""
    df = result.metrics_dataframe
    if df is not None and "time_this_iter_s" in df:
        return float(df["time_this_iter_s"].sum())
    return float((result.metrics or {}).get("time_total_s", float("nan")))


def _rows(results, tasks: list[str], front: list[str], max_t: int, label: str) -> list[dict[str, Any]]:
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
                **{score_key(t): float(m.get(score_key(t), float("nan"))) for t in front},
                **{f"weight/{t}": float(m.get(f"weight/{t}", float("nan"))) for t in tasks},
                "seconds": _trial_seconds(r),
                "error": str(r.error).splitlines()[0] if r.error else "",
            }
        )
    return rows


def _point(row: dict[str, Any], tasks: list[str], front: list[str], written: TrainConfig, tune_cfg: TuneConfig) -> dict:
    """One trial as a point of the front, with the training config that reproduces its weights."""
    weights = {t: row[f"weight/{t}"] for t in tasks}
    cfg = weights_train_config(written, tune_cfg, weights)
    return {
        "trial": row["trial"],
        "epochs": row["epochs"],
        "objective": row["objective"],
        "scores": {t: row[score_key(t)] for t in front},
        "weights": weights,
        "train_config": cfg.model_dump(mode="json"),
    }


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
    """The weight search itself (ASHA/FIFO + Optuna, or PBT), restored if its storage holds an earlier run."""
    space = {**param_space(tune_cfg.search, searched), **(extra or {})}
    return _tuner(tune_cfg, base, trainable, tune_cfg.name, space, searched).fit()


def run_baselines(
    tune_cfg: TuneConfig,
    base: TrainConfig,
    trainable,
    extra: dict[str, Any] | None = None,
    tuned_weights: dict[str, float] | None = None,
) -> list:
    """Equal weights and uncertainty weighting, and the search's chosen weights (``tuned_weights``)
    again, each on ``baseline_seeds`` seeds and the full budget."""
    from ray import tune

    names = baseline_names(tune_cfg) + (tuned_seed_names(tune_cfg) if tuned_weights else [])
    if not names:
        return []
    space = {BASELINE_KEY: tune.grid_search(names), **(extra or {})}
    if tuned_weights:
        space[TUNED_WEIGHTS_KEY] = tuned_weights
    return list(_tuner(tune_cfg, base, trainable, f"{tune_cfg.name}-baselines", space, None).fit())


def warm_start_check(init_from: str, base: TrainConfig) -> dict[str, Any]:
    """Whether the warm-start checkpoint was trained on this sweep's split: if not, rows it trained on
    may sit in this sweep's test split, and held-out figures flatter every run alike."""
    from shoprank.model.checkpoint import read_manifest
    from shoprank.tasks.config import DataConfig

    recorded = read_manifest(init_from).get("train_config")
    if not recorded:
        return {"init_from": init_from, "same_split": False, "differs": ["no train_config in its manifest"]}
    theirs = DataConfig.of(recorded)
    differs = [
        f"split.{k}"
        for k in ("val_fraction", "test_fraction", "item_split")
        if getattr(theirs.split, k) != getattr(base.split, k)
    ]
    if theirs.data_seed != base.data_seed:
        differs.append("data seed")
    if {t: c.sources for t, c in theirs.tasks.items()} != {t: c.sources for t, c in base.tasks.items()}:
        differs.append("tasks/sources")
    return {"init_from": init_from, "same_split": not differs, "differs": differs}


def seed_gains(seed_runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each weighting's held-out mean and spread over its seeds (``seed_runs``: kind → run name →
    scores), and the tuned mean's gain over equal weights' against twice equal weights' spread."""
    equal, tuned = seed_runs.get("equal", {}), seed_runs.get(TUNED, {})
    out: dict[str, Any] = {"seeds": sorted(equal), "kinds": {k: sorted(v) for k, v in seed_runs.items()}, "rows": {}}
    if not tuned or not equal:
        return out
    keys = ["objective", *sorted({m for runs in seed_runs.values() for r in runs.values() for m in r["test_metrics"]})]

    def value(r: dict[str, Any], key: str) -> float:
        return r["objective"] if key == "objective" else r["test_metrics"].get(key, float("nan"))

    for key in keys:
        by_kind = {kind: spread([value(r, key) for r in runs.values()]) for kind, runs in seed_runs.items()}
        mean, std = by_kind["equal"]
        gain = by_kind[TUNED][0] - mean
        out["rows"][key] = {
            "mean": mean,
            "std": std,
            "gain": gain,
            "verdict": verdict(gain, std),
            "by_kind": {k: {"mean": m, "std": sd} for k, (m, sd) in by_kind.items()},
        }
    return out


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
    tasks, front_tasks = list(base.tasks), tune_cfg.front_tasks()
    searched = [t for t in (tune_cfg.search.tasks or tasks) if t in tasks]
    if not searched:
        raise ShoprankError(f"search.tasks: none of {tune_cfg.search.tasks} is trained by {tune_cfg.train_config}")
    out_dir = Path(out or Path(tune_cfg.storage_path) / tune_cfg.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_task_data(base)
    # Trials run in their own directories: the warm-start checkpoint travels as an absolute path.
    run_cfg = tune_cfg
    if tune_cfg.init_from:
        run_cfg = tune_cfg.model_copy(update={"init_from": str(Path(tune_cfg.init_from).resolve())})
    warm = (
        warm_start_check(run_cfg.init_from or base.init_from, base) if (run_cfg.init_from or base.init_from) else None
    )
    if warm and not warm["same_split"]:
        log(f"warning: init_from {warm['init_from']} was trained on another split ({', '.join(warm['differs'])}): "
            "its training rows may be in this sweep's test split")  # fmt: skip
    init_training_ray(address, tune_cfg.max_concurrent_trials)
    trainable = make_trainable(run_cfg, base, data)
    extra = {"_start_log": start_log} if start_log else {}

    grid = run_search(run_cfg, base, trainable, searched, extra)
    # Written with the training config's own (relative) paths, so it runs wherever that one does.
    as_written = parse_config(read_yaml(tune_cfg.train_config, "config"), tune_cfg.train_config)
    best = grid.get_best_result(metric=OBJECTIVE, mode="max", scope="all")
    best_cfg = trial_train_config(as_written, tune_cfg, best.config)  # PBT: the weights it ended on
    tuned_weights = {t: tc.weight for t, tc in best_cfg.tasks.items()}
    baselines = run_baselines(run_cfg, base, trainable, extra, tuned_weights)

    rows = _rows(grid, tasks, front_tasks, base.epochs, "tuned")
    rows += [
        row | {"trial": r.config.get(BASELINE_KEY), "kind": "baseline"}
        for r, row in zip(baselines, _rows(baselines, tasks, front_tasks, base.epochs, "baseline"), strict=True)
    ]
    trials = pl.DataFrame(rows).sort(["kind", "best_objective"], descending=[True, True])
    write_trials(trials, out_dir)
    plot_weights(trials.filter(pl.col("kind") == "tuned"), tasks, out_dir)

    tuned_rows = [r for r in rows if r["kind"] == "tuned" and not r["error"]]
    front = build_front(
        [_point(r, tasks, front_tasks, as_written, tune_cfg) for r in tuned_rows], front_tasks, base.epochs
    )
    front["reference"] = {
        r["trial"]: {t: r[score_key(t)] for t in front_tasks}
        for r in rows
        if r["kind"] == "baseline" and not r["error"] and baseline_seed(r["trial"])[1] == 0
    }
    write_front(front, out_dir)

    best_ckpt = best.get_best_checkpoint(OBJECTIVE, "max")
    best_path = out_dir / "best_config.yaml"
    atomic_write_text(best_path, yaml.safe_dump(best_cfg.model_dump(mode="json"), sort_keys=False))

    runs = {TUNED: held_out(best_ckpt.path, data, tasks, tune_cfg)}
    seed_runs: dict[str, dict[str, Any]] = {TUNED: {TUNED: runs[TUNED]}}
    for r in baselines:
        if r.error is None:
            name = r.config[BASELINE_KEY]
            scored = held_out(r.get_best_checkpoint(OBJECTIVE, "max").path, data, tasks, tune_cfg)
            kind, offset = baseline_seed(name)
            seed_runs.setdefault(kind, {})[name] = scored
            if offset == 0:
                runs[name] = scored
    base_scores = {n: v["objective"] for n, v in runs.items() if n != "tuned"}
    winner = max(runs, key=lambda n: runs[n]["objective"])
    margin = runs["tuned"]["objective"] - max(base_scores.values()) if base_scores else float("nan")
    seconds = {r["trial"]: r["seconds"] for r in rows if r["kind"] == "baseline"}
    seed_s = [seconds[n] for n in baseline_names(tune_cfg) if baseline_seed(n)[0] == "equal" and n in seconds]
    per_seed = spread(seed_s)[0] if seed_s else None
    compute = {
        name: compute_used(
            [r["seconds"] for r in rows if r["kind"] == kind],
            tune_cfg.cpus_per_trial,
            tune_cfg.gpus_per_trial,
            per_seed,
        ).as_dict()
        for name, kind in (("search", "tuned"), ("baselines", "baseline"))
    }
    compute["scheduler"] = tune_cfg.scheduler
    comparison = {
        "winner": winner,
        "margin": margin,
        "runs": runs,
        "objective": tune_cfg.objective.model_dump(),
        "seed_spread": seed_gains(seed_runs),
        "compute": compute,
        "warm_start": warm,
    }
    atomic_write_text(out_dir / "comparison.json", json.dumps(comparison, indent=2, default=float))
    atomic_write_text(out_dir / "comparison.md", comparison_markdown(comparison))
    wall = time.perf_counter() - t0
    log(str(trials.select("trial", "kind", "epochs", "stopped_by_asha", "objective", "best_objective", "seconds")))
    log(comparison_markdown(comparison))
    log(f"outputs in {out_dir} ({wall:.0f}s); best weights -> {best_path}; front -> {out_dir / 'front.md'}")
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
