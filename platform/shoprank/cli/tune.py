"""``shoprank tune``: run or submit a loss-weight sweep (shoprank.tune.driver);
``shoprank tune pick``: write one point of a finished sweep's Pareto front as a training config."""

from __future__ import annotations

import argparse
import shlex

from shoprank.cli.options import add_address, add_no_wait, add_submit
from shoprank.errors import ShoprankError


def _run(args: argparse.Namespace) -> int:
    from shoprank.tune.config import load_tune_config

    if not args.config:
        raise ShoprankError("tune: --config is required (or use `shoprank tune pick`)")
    cfg = load_tune_config(args.config)  # validate before anything starts
    if args.submit:
        from shoprank.cli.jobs import submit_job

        cmd = ["python", "-m", "shoprank.tune.driver", "--config", args.config]
        if args.out:
            cmd += ["--out", args.out]
        return submit_job(args.submit, shlex.join(cmd), wait=not args.no_wait)
    from shoprank.tune.driver import sweep

    res = sweep(cfg, args.out, address=args.address)
    if not res.comparison:
        raise ShoprankError("sweep produced no comparison")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search task loss weights with Ray Tune (ASHA + Optuna, or PBT) against equal/uncertainty baselines",
        description=(
            "Run a loss-weight sweep: Optuna TPE proposes task weights and ASHA stops weak trials (or "
            "population-based training mutates them during training), equal weights and learned uncertainty "
            "weighting run on the same budget, the best weights are written as a training config and the "
            "Pareto front over the tasks as front.json/.md/.png. Re-running the same command restores an "
            "interrupted sweep. `shoprank tune pick` writes one front point as a training config."
        ),
    )
    p.add_argument("--config", default=None, help="sweep YAML, e.g. configs/tune.yaml (required to run a sweep)")
    p.add_argument("--out", default=None, help="output directory (default: <storage_path>/<name> from the YAML)")
    add_address(p)
    add_submit(p)
    add_no_wait(p)
    p.set_defaults(func=_run)
    picks = p.add_subparsers(dest="tune_command", metavar="pick")
    q = picks.add_parser(
        "pick",
        help="write the front point a preference chooses as a training config",
        description=(
            "Choose the point of a finished sweep's Pareto front (front.json) with the highest "
            "preference-weighted task score and write its weights as a training config."
        ),
    )
    q.add_argument("--sweep", required=True, help="the sweep's output directory (holds front.json)")
    q.add_argument(
        "--prefer", required=True, help="task=weight,... over the front's tasks, e.g. click=0.7,relevance=0.3"
    )
    q.add_argument("--out", required=True, help="training config YAML to write")
    q.set_defaults(func=_pick)


def _pick(args: argparse.Namespace) -> int:
    from shoprank.tune.pick import pick

    point = pick(args.sweep, args.prefer, args.out)
    scores = ", ".join(f"{t}={v:.4f}" for t, v in point["scores"].items())
    print(f"picked trial {point['trial']} ({scores}) -> {args.out}")
    return 0
