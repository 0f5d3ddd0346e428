"""``shoprank train``: multi-task fine-tuning on Ray Train, locally or submitted to a cluster."""

from __future__ import annotations

import argparse
import shlex


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the multi-task model (Ray Train; locally or on a cluster)",
        description="Run the training driver (shoprank.train.driver): build per-task examples from the config's "
        "sources, train with Ray Train (TorchTrainer, DDP), checkpoint every epoch and resume from OUT after a "
        "kill. Without --address it runs on a local Ray; with --address it is submitted through the Ray Job "
        "Submission API.",
    )
    p.add_argument("--config", required=True, help="training YAML, e.g. configs/reference.yaml")
    p.add_argument("--out", required=True, help="output directory (checkpoints, OUT/model, history, plots)")
    p.add_argument("--address", default=None, help="Ray job server (e.g. http://head:8265 or 'auto') to submit to")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default: the config's num_workers)")
    p.add_argument("--no-follow", action="store_true", help="with --address: return after submitting")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.address:
        from shoprank.cli.jobs import submit_job

        cmd = ["python", "-m", "shoprank.train.driver", "--config", args.config, "--out", args.out]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        return submit_job(args.address, shlex.join(cmd), follow=not args.no_follow)

    from shoprank.train.config import load_config
    from shoprank.train.driver import train

    cfg = load_config(args.config)
    res = train(cfg, args.out, workers=args.workers)
    print(res.summary())
    return 0
