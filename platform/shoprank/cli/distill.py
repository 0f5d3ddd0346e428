"""``shoprank distill-labels``: the cross-encoder teacher's soft labels for distilling the bi-encoder."""

from __future__ import annotations

import argparse
import json
import shlex

from shoprank.cli.options import add_no_wait, add_submit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill-labels",
        help="score training pairs and mined hard negatives with the cross-encoder (soft labels)",
        description="Run the teacher labelling (shoprank.train.distill): the config's training queries only, "
        "their training pairs and the miner bi-encoder's hard negatives scored by the cross-encoder, written to "
        "distill.labels (one parquet per task + manifest.json). Then `shoprank train --config` the same file.",
    )
    p.add_argument("--config", required=True, help="training YAML with a distill block, e.g. configs/distill.yaml")
    p.add_argument("--force", action="store_true", help="redo every task even if its labels are up to date")
    add_submit(p)
    add_no_wait(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.submit:
        from shoprank.cli.jobs import submit_job

        cmd = ["python", "-m", "shoprank.train.distill", "--config", args.config, *(["--force"] if args.force else [])]
        return submit_job(args.submit, shlex.join(cmd), wait=not args.no_wait)

    from shoprank.train.config import load_config
    from shoprank.train.distill import label

    manifest = label(load_config(args.config), force=args.force)
    print(json.dumps({t: {k: v[k] for k in ("rows", "by_origin", "queries")} for t, v in manifest["tasks"].items()}))
    return 0
