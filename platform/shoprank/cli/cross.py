"""``shoprank train-cross``: train the cross-encoder phase (Ray Train), locally, on a cluster or as a Ray job."""

from __future__ import annotations

import argparse
import json
import shlex

from shoprank.cli.options import add_address, add_no_wait, add_submit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-cross",
        help="train the cross-encoder reranker (query and item read together; Ray Train)",
        description="Run the cross-encoder training driver (shoprank.train.cross): the multi-task sources' "
        "relevance and click examples (same splits as `shoprank train`), Ray Train (TorchTrainer), the best "
        "validation checkpoint copied to OUT/model (safetensors + manifest).",
    )
    p.add_argument("--config", required=True, help="cross-encoder YAML, e.g. configs/cross_encoder.yaml")
    p.add_argument("--out", required=True, help="output directory (Ray checkpoints, OUT/model, summary.json)")
    add_address(p)
    add_submit(p)
    add_no_wait(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.submit:
        from shoprank.cli.jobs import submit_job

        cmd = ["python", "-m", "shoprank.train.cross", "--config", args.config, "--out", args.out]
        return submit_job(args.submit, shlex.join(cmd), wait=not args.no_wait)

    from shoprank.train.cross import load_cross_config, train_cross

    summary = train_cross(load_cross_config(args.config), args.out, address=args.address, config_path=args.config)
    print(json.dumps({k: summary[k] for k in ("checkpoint", "best_step", "wall_seconds")}))
    return 0
