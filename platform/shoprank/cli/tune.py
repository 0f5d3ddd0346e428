"""``shoprank tune``: run or submit a loss-weight sweep (shoprank.tune.driver)."""

from __future__ import annotations

import argparse
import shlex

from shoprank.cli.options import add_address, add_no_wait, add_submit
from shoprank.errors import ShoprankError


def _run(args: argparse.Namespace) -> int:
    from shoprank.tune.config import load_tune_config

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
        help="search task loss weights with Ray Tune (ASHA + Optuna) against equal/uncertainty baselines",
        description=(
            "Run a loss-weight sweep: Optuna TPE proposes task weights, ASHA stops weak trials, equal "
            "weights and learned uncertainty weighting run on the same budget, and the best weights are "
            "written as a training config. Re-running the same command restores an interrupted sweep."
        ),
    )
    p.add_argument("--config", required=True, help="sweep YAML, e.g. configs/tune.yaml")
    p.add_argument("--out", default=None, help="output directory (default: <storage_path>/<name> from the YAML)")
    add_address(p)
    add_submit(p)
    add_no_wait(p)
    p.set_defaults(func=_run)
