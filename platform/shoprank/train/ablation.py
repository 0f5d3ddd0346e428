"""Multi-task vs single-task, and shared bottom vs MMoE, at the same training budget.

    python -m jobs.ablation --config configs/ablation.yaml --out runs/ablation
    ray job submit --working-dir . -- python -m jobs.ablation --config configs/ablation.yaml --out /tmp/abl

Trains, with the same epochs x steps x batch size, the same data splits and the same head
refit: the multi-task model on a shared bottom, the multi-task model on an MMoE, and one
single-task model per task (``--single`` to choose). ``--schedule all`` has the multi-task
model train one batch of every task at every step, so each task sees exactly the batches its
single-task model sees (the same per-task budget; the config's one-task-per-step schedule
gives the same total budget instead). Each is a normal ``jobs.train`` run
(Ray Train) under ``OUT/<variant>``, evaluated on the held-out test split by
``shoprank.eval.runner.evaluate_checkpoint``. Finished variants are skipped on a rerun (their
``eval.json`` is kept), so a killed ablation resumes where it stopped.

Writes ``OUT/ablation.json`` and ``OUT/ablation.md``: one row per task metric, one column per
variant, and whether each multi-task model beats the single-task model of that task.

``--seed N`` retrains every variant with training seed N on the config's held-out data;
``--combine DIR...`` reads such runs (one seed each) into ``OUT/ablation_seeds.{md,json}``:
mean ± sd, and a task won only where every multi-task seed beats every single-task seed::

    python -m jobs.ablation --config configs/ablation.yaml --out runs/s1 --seed 1
    python -m jobs.ablation --config configs/ablation.yaml --out runs/seeds --combine runs/s0 runs/s1 runs/s2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from shoprank.errors import ShoprankError
from shoprank.eval.report import markdown_table
from shoprank.eval.runner import evaluate_checkpoint, source_of
from shoprank.files import atomic_write_text
from shoprank.model.registry import CLASS_TASKS
from shoprank.tasks.examples import build_task_data
from shoprank.train.config import TrainConfig, load_config
from shoprank.train.driver import train
from shoprank.train.sampler import SCHEDULES

MULTI = ("multi_task_shared_bottom", "multi_task_mmoe")
LOWER_IS_BETTER = ("rmse",)
ONE_CLASS = "not compared (one-class test set)"


def variants(
    cfg: TrainConfig,
    single: list[str] | None,
    multi: list[str] | None = None,
    schedule: str | None = None,
    per_task_steps: bool = False,
    grad_surgery: str | None = None,
) -> dict[str, TrainConfig]:
    """Variant name -> config. Every variant keeps the base budget (epochs, steps, batch size).

    ``schedule`` overrides the multi-task variants' task schedule (a single-task model trains its
    one task every step under any schedule); ``multi`` picks multi-task variants (default both).
    ``per_task_steps`` (round_robin only) multiplies the multi-task variants' steps and warm-up
    by the number of tasks: one task per step, each task exactly its single-task model's steps.
    ``grad_surgery`` (schedule all only) sets how the multi-task variants combine task gradients.
    """
    base = cfg if schedule is None else cfg.model_copy(update={"schedule": schedule})
    if grad_surgery is not None:
        if grad_surgery != "none" and base.schedule != "all":
            raise ShoprankError(f"--grad-surgery {grad_surgery} needs --schedule all (got {base.schedule!r})")
        base = base.model_copy(update={"grad_surgery": grad_surgery})
    if per_task_steps:
        if base.schedule != "round_robin":
            raise ShoprankError(f"--per-task-steps needs --schedule round_robin (got {base.schedule!r})")
        n = len(cfg.tasks)
        base = base.model_copy(
            update={"steps_per_epoch": cfg.steps_per_epoch * n, "warmup_steps": cfg.warmup_steps * n}
        )
    out = {}
    for name in multi if multi is not None else MULTI:
        if name not in MULTI:
            raise ShoprankError(f"--multi: unknown variant {name!r} (choose from {list(MULTI)})")
        arch = "mmoe" if name == MULTI[1] else "shared_bottom"
        out[name] = base.model_copy(update={"model": cfg.model.model_copy(update={"architecture": arch})})
    for task in single if single is not None else list(cfg.tasks):
        if task not in cfg.tasks:
            raise ShoprankError(f"--single: task {task!r} is not in the config (tasks: {sorted(cfg.tasks)})")
        alone = cfg.tasks[task].model_copy(update={"encoder_grad": 1.0})  # alone, a task owns the encoder
        one = cfg.model_copy(update={"model": cfg.model.model_copy(update={"architecture": "shared_bottom"})})
        out[f"single_task_{task}"] = one.with_tasks({task: alone})
    return out


def with_training_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    """The same run with another training seed (initialisation, batches, sampling); the held-out
    data (splits, click negatives, val and eval samples) stays on the config's data seed."""
    return cfg.model_copy(
        update={
            "seed": seed,
            "split": cfg.split.model_copy(update={"seed": cfg.data_seed}),
            "model": cfg.model.model_copy(update={"seed": seed}),
        }
    )


def one_class_tests(cfg: TrainConfig) -> set[str]:
    """``task/source`` of the classification test sets that hold a single class.

    A model that always predicts that class scores 1.0 there, so such a set cannot rank two
    classifiers (Best Buy's intent labels here are one category): reported, not compared.
    """
    tasks = {t: tc for t, tc in cfg.tasks.items() if t in CLASS_TASKS}
    if not tasks:
        return set()
    data = build_task_data(cfg.with_tasks(tasks))
    found = set()
    for task in tasks:
        test = data.split(task, "test")
        src = source_of(test)
        for name in set(src.to_list()):
            if test.filter(src == name)["label"].n_unique() < 2:
                found.add(f"{task}/{name}")
    return found


def better(metric: str, a: float, b: float) -> bool:
    """Is ``a`` better than ``b`` for this metric (``.../rmse`` lower, everything else higher)?"""
    if math.isnan(a) or math.isnan(b):
        return False
    return a < b if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else a > b


def comparison(
    results: dict[str, dict[str, float]], skip: set[str] = frozenset()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Table rows (metric x variant) and a summary: tasks where each multi-task model beats single-task.

    Metrics of the ``task/source`` test sets in ``skip`` (``one_class_tests``) are shown, not compared.
    """
    multis = [m for m in MULTI if m in results]  # the multi-task variants that ran
    rows, wins = [], {m: set() for m in multis}
    losses = {m: set() for m in multis}
    metrics = sorted({k for r in results.values() for k in r})
    for metric in metrics:
        task = metric.split("/", 1)[0]
        row: dict[str, Any] = {"metric": metric}
        for name, r in results.items():
            row[name] = r.get(metric, float("nan"))
        single = results.get(f"single_task_{task}", {}).get(metric, float("nan"))
        for m in multis:
            mv = results[m].get(metric, float("nan"))
            if metric.rsplit("/", 1)[0] in skip:
                row[f"{m} beats single"] = ONE_CLASS
                continue
            if math.isnan(single) or math.isnan(mv):
                row[f"{m} beats single"] = "–"
                continue
            if mv == single:  # a tie is neither (e.g. Best Buy's one-class intent: 1.0 everywhere)
                row[f"{m} beats single"] = "tie"
                continue
            won = better(metric, mv, single)
            row[f"{m} beats single"] = "yes" if won else "no"
            (wins if won else losses)[m].add(task)
        rows.append(row)
    summary = {
        m: {
            # a task counts as a win when the multi-task model wins on every compared metric of it
            # (ties aside)
            "tasks_won": sorted(wins[m] - losses[m]),
            "tasks_lost_or_mixed": sorted(losses[m]),
        }
        for m in multis
    }
    if len(multis) < len(MULTI):
        return rows, summary
    arch = {}
    for metric in metrics:
        a, b = results.get(MULTI[0], {}).get(metric), results.get(MULTI[1], {}).get(metric)
        if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)) and a != b:
            arch[metric] = "mmoe" if better(metric, b, a) else "shared_bottom"
    summary["architecture_better_on"] = {k: sum(1 for v in arch.values() if v == k) for k in ("shared_bottom", "mmoe")}
    return rows, summary


def seed_comparison(
    runs: list[dict[str, dict[str, float]]], skip: set[str] = frozenset()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Multi-task vs single-task over runs that differ only in their training seed.

    A metric is *separated* when every multi-task run is better than every single-task run (or
    every one worse): with 3 seeds a side, the one-sided permutation p-value of that is 1/20.
    A task is won when at least one of its metrics is separated in the multi-task model's favour
    and none against it; lost when the reverse; mixed when both; otherwise within noise.
    Metrics of the ``task/source`` test sets in ``skip`` are shown, not compared.
    """
    variants_all = [v for v in runs[0] if all(v in r for r in runs)]
    multis = [m for m in MULTI if m in variants_all]
    metrics = sorted({k for r in runs for v in variants_all for k in r[v]})
    rows: list[dict[str, Any]] = []
    verdicts: dict[str, dict[str, set[str]]] = {m: {"better": set(), "worse": set()} for m in multis}
    tasks: set[str] = set()
    for metric in metrics:
        task = metric.split("/", 1)[0]
        single = f"single_task_{task}"
        row: dict[str, Any] = {"metric": metric}
        vals = {v: [r[v].get(metric, float("nan")) for r in runs] for v in variants_all}
        for v, xs in vals.items():
            xs = [x for x in xs if not math.isnan(x)]
            row[v] = f"{sum(xs) / len(xs):.4f} ± {_sd(xs):.4f}" if xs else "–"
        for m in multis:
            ms, ss = vals.get(m, []), vals.get(single, [])
            if metric.rsplit("/", 1)[0] in skip:
                row[f"{m} vs single"] = ONE_CLASS
                continue
            if not ms or not ss or any(math.isnan(x) for x in ms + ss):
                row[f"{m} vs single"] = "–"
                continue
            tasks.add(task)
            if all(better(metric, a, b) for a in ms for b in ss):
                row[f"{m} vs single"] = "better (separated)"
                verdicts[m]["better"].add(task)
            elif all(better(metric, b, a) for a in ms for b in ss):
                row[f"{m} vs single"] = "worse (separated)"
                verdicts[m]["worse"].add(task)
            else:
                row[f"{m} vs single"] = "overlap"
        rows.append(row)
    summary: dict[str, Any] = {"runs": len(runs)}
    for m in multis:
        b, w = verdicts[m]["better"], verdicts[m]["worse"]
        summary[m] = {
            "tasks_won": sorted(b - w),
            "tasks_lost": sorted(w - b),
            "tasks_mixed": sorted(b & w),
            "tasks_within_noise": sorted(tasks - b - w),
        }
    return rows, summary


def _sd(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def combine(dirs: list[Path], out: Path, cfg: TrainConfig, config_path: str) -> str:
    """Read each DIR/ablation.json (one training seed each; ``cfg`` the config they ran, read from
    ``config_path``), write OUT/ablation_seeds.{json,md}."""
    docs = []
    for d in dirs:
        path = d / "ablation.json"
        if not path.is_file():
            raise ShoprankError(f"--combine: {path} not found (run the ablation into {d} first)")
        docs.append(json.loads(path.read_text()))
    seeds = [doc.get("seed", 0) for doc in docs]  # ablations from before --seed ran on the config's seed 0
    data_seeds = {doc.get("data_seed", 0) for doc in docs}
    if len(set(seeds)) != len(seeds) or len(data_seeds) != 1:
        raise ShoprankError(f"--combine: needs distinct training seeds on one data seed (got seeds {seeds}, "
                            f"data seeds {sorted(data_seeds)})")  # fmt: skip
    if cfg.data_seed not in data_seeds:
        raise ShoprankError(f"--combine: the runs used data seed {sorted(data_seeds)}, the config {cfg.data_seed}")
    skip = one_class_tests(cfg)
    rows, summary = seed_comparison([doc["results"] for doc in docs], skip)
    summary["not_compared_one_class"] = sorted(skip)
    budget = docs[0]["budget"].split(", training seed")[0]
    budget += f"; config `{config_path}`"
    md = (
        f"# Multi-task vs single-task over {len(docs)} training seeds\n\nBudget: {budget}; training seeds "
        f"{seeds}, one held-out test set (data seed {data_seeds.pop()}); runs: {', '.join(str(d) for d in dirs)}. "
        "Cells are mean ± sd over the seeds. *Separated*: every multi-task run better (or worse) than every "
        "single-task run (one-sided permutation p = 1/20 with 3 seeds a side). Not compared: classification "
        f"test sets holding one class ({', '.join(sorted(skip)) or 'none'}), where always predicting it scores "
        "1.0.\n\n"
        f"{markdown_table(rows)}\n"
        + "".join(
            f"- {m}: won {s['tasks_won']}; lost {s['tasks_lost']}; mixed {s['tasks_mixed']}; "
            f"within noise {s['tasks_within_noise']}\n"
            for m, s in summary.items()
            if m in MULTI
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation_seeds.md", md)
    result = {"dirs": [str(d) for d in dirs], "seeds": seeds, "summary": summary, "rows": rows}
    atomic_write_text(out / "ablation_seeds.json", json.dumps(result, indent=2, default=float))
    return md


def run_variant(name: str, cfg: TrainConfig, out: Path, workers: int | None, max_rows: int | None) -> dict[str, float]:
    """Train (or resume) and evaluate one variant; reuse its eval.json when already done."""
    vdir = out / name
    done = vdir / "eval.json"
    if done.is_file():
        print(f"[{name}] already evaluated: {done}", flush=True)
        return json.loads(done.read_text())["metrics"]
    print(f"[{name}] training: tasks {list(cfg.tasks)}, {cfg.model.architecture}", flush=True)
    res = train(cfg, vdir, workers=workers)
    report = evaluate_checkpoint(res.checkpoint, baselines=False, max_rows=max_rows, log=print)
    report["train_seconds"] = res.wall_seconds
    atomic_write_text(done, json.dumps(report, indent=2, default=float, sort_keys=True))
    return report["metrics"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.ablation", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="multi-task training YAML; its budget applies to every variant")
    ap.add_argument("--out", required=True, help="output directory (one sub-directory per variant)")
    ap.add_argument("--single", nargs="*", default=None, help="tasks to train alone (default: every task)")
    ap.add_argument("--multi", nargs="*", default=None, choices=MULTI, help="multi-task variants (default: both)")
    ap.add_argument("--schedule", default=None, choices=SCHEDULES,
                    help="task schedule of the multi-task variants (default: the config's); 'all' gives every "
                         "task one batch each step, the batches its single-task model sees")  # fmt: skip
    ap.add_argument("--per-task-steps", action="store_true",
                    help="with --schedule round_robin: the multi-task variants take (number of tasks) x the "
                         "steps, one task per step, so each task gets its single-task model's steps")  # fmt: skip
    ap.add_argument("--grad-surgery", default=None, choices=("none", "pcgrad"),
                    help="with --schedule all: how the multi-task variants combine their task gradients "
                         "(default: the config's grad_surgery)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed of every variant (default: the config's); the held-out data stays "
                         "on the config's seed, so runs with different --seed share one test set")  # fmt: skip
    ap.add_argument("--workers", type=int, default=None, help="Ray Train workers per run")
    ap.add_argument("--max-eval-rows", type=int, default=4000, help="test rows per task and source")
    ap.add_argument("--combine", nargs="+", type=Path, default=None, metavar="DIR",
                    help="no training: combine finished ablations that differ only in --seed into "
                         "OUT/ablation_seeds.{md,json} (mean ± sd, separated or not)")  # fmt: skip
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if args.combine:
        if not args.config:
            ap.error("--combine needs --config: the config the combined ablations ran")
        try:
            print(combine(list(args.combine), out, load_config(args.config), args.config))
        except ShoprankError as e:
            print(f"jobs.ablation: error: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.config:
        ap.error("--config is required (unless --combine)")
    try:
        cfg = load_config(args.config)
        if args.seed is not None:
            cfg = with_training_seed(cfg, args.seed)
        plan = variants(cfg, args.single, args.multi, args.schedule, args.per_task_steps, args.grad_surgery)
        results = {n: run_variant(n, c, out, args.workers, args.max_eval_rows) for n, c in plan.items()}
    except ShoprankError as e:
        print(f"jobs.ablation: error: {e}", file=sys.stderr)
        return 2
    skip = one_class_tests(cfg)
    rows, summary = comparison(results, skip)
    schedule = args.schedule or cfg.schedule
    budget = f"{cfg.epochs} epochs x {cfg.steps_per_epoch} steps x batch {cfg.batch_size}"
    budget += f", multi-task schedule {schedule}"
    surgery = args.grad_surgery or cfg.grad_surgery
    if surgery != "none":
        budget += f" with {surgery}"
    if args.seed is not None:
        budget += f", training seed {cfg.seed} (held-out data from seed {cfg.data_seed})"
    if args.per_task_steps:
        budget += f" with {len(cfg.tasks)} x the steps (one task per step; each task its single-task steps)"
    md = (
        f"# Multi-task vs single-task, shared bottom vs MMoE\n\nSame budget for every variant: {budget}; "
        f"config `{args.config}`; held-out test split. Not compared: classification test sets holding one "
        f"class ({', '.join(sorted(skip)) or 'none'}), where always predicting it scores 1.0.\n\n"
        f"{markdown_table(rows)}\n"
        + "".join(f"- {m}: beats single-task on {len(s['tasks_won'])} task(s) {s['tasks_won']}; "
                  f"not on {s['tasks_lost_or_mixed']}\n" for m, s in summary.items() if m in MULTI)
        + (f"- shared bottom vs MMoE, metrics won: {summary['architecture_better_on']}\n"
           if "architecture_better_on" in summary else "")
    )  # fmt: skip
    atomic_write_text(out / "ablation.md", md)
    atomic_write_text(out / "ablation.json", json.dumps({"budget": budget, "seed": cfg.seed, "data_seed": cfg.data_seed,
                                                        "results": results, "summary": summary},
                                                       indent=2, default=float))  # fmt: skip
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
