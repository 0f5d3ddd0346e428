"""``shoprank train``: multi-task fine-tuning on Ray Train, locally, on a cluster or as a Ray job."""

from __future__ import annotations

import argparse
import shlex

from shoprank.cli.options import add_address, add_no_wait, add_submit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the multi-task model (Ray Train; locally, on a cluster, or as a Ray job)",
        description="Run the training driver (shoprank.train.driver): build per-task examples from the config's "
        "sources, train with Ray Train (TorchTrainer, DDP), checkpoint every epoch and resume from OUT after a "
        "kill. It runs on a local Ray, on the cluster at --address, or, with --submit, as a Ray job "
        "(Ray Job Submission API).",
    )
    p.add_argument("--config", required=True, help="training YAML, e.g. configs/reference.yaml")
    p.add_argument("--out", required=True, help="output directory (checkpoints, OUT/model, history, plots)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's num_workers)")
    p.add_argument("--export-onnx", action="store_true",
                   help="then export OUT/model's encoder to ONNX (fp32, int8) and run the parity gate "
                   "(as `shoprank export-onnx --checkpoint OUT/model`)")  # fmt: skip
    add_address(p)
    add_submit(p)
    add_no_wait(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.submit:
        from shoprank.cli.jobs import submit_job

        cmd = ["python", "-m", "shoprank.train.driver", "--config", args.config, "--out", args.out]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        return submit_job(args.submit, shlex.join(cmd), wait=not args.no_wait)

    from shoprank.train.config import load_config
    from shoprank.train.driver import train

    cfg = load_config(args.config)
    res = train(cfg, args.out, workers=args.workers, address=args.address)
    print(res.summary())
    if args.export_onnx:
        from shoprank.cli.onnx import export_checkpoint

        export_checkpoint(str(res.checkpoint))
    return 0
