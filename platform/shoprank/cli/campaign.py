"""``shoprank campaign``: run a campaign locally, submit it as a Ray job, or check a job's status.

shoprank campaign run    --campaign SPEC --catalogue PATH [--format F] [--checkpoint CK]
shoprank campaign submit --address http://HEAD:8265 --campaign SPEC --catalogue PATH [...]
shoprank campaign status [JOB_ID] --address http://HEAD:8265
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from shoprank.cli.jobs import job_client, job_runtime_env
from shoprank.errors import ConfigError, ShoprankError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of a campaign run (shared by ``campaign run``/``submit`` and ``jobs.score_catalogue``)."""
    p.add_argument("--campaign", required=True, help="campaign spec YAML")
    p.add_argument("--catalogue", required=True, help="catalogue file (canonical parquet/CSV, or any --format)")
    p.add_argument("--format", dest="fmt", default=None, help="catalogue format (default: from the file suffix)")
    p.add_argument("--checkpoint", default=None, help="shoprank checkpoint dir (default: pretrained encoder only)")
    p.add_argument("--output", default=None, help="override the spec's output directory")
    p.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"], help="encoder when no checkpoint")
    p.add_argument("--shard-size", type=int, default=4096, help="rows per shard (resume granularity)")
    p.add_argument("--batch-size", type=int, default=64, help="items per encoder forward pass")
    p.add_argument("--actors", type=int, default=None, help="scoring actors (default: one per CPU, or per GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``campaign run|submit|status`` to the ``shoprank`` parser."""
    p = subparsers.add_parser("campaign", help="score a catalogue for a seasonal campaign (Ray batch job)")
    sub = p.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="run a campaign on a local Ray (or RAY_ADDRESS)")
    add_job_arguments(run)
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    run.set_defaults(func=cmd_run)

    submit = sub.add_parser("submit", help="submit a campaign as a Ray job (working_dir = this repository)")
    submit.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://127.0.0.1:8265")
    add_job_arguments(submit)
    submit.add_argument("--no-wait", action="store_true", help="return after submitting, do not follow the logs")
    submit.add_argument("--retry-s", type=float, default=60.0, help="keep retrying a cluster that is still starting")
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="status of one campaign job, or of all campaign jobs")
    status.add_argument("job_id", nargs="?", default=None)
    status.add_argument("--address", required=True, help="Ray dashboard address")
    status.add_argument("--logs", type=int, default=10, help="log lines to show for one job")
    status.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> int:
    import ray

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            num_cpus=None if os.environ.get("RAY_ADDRESS") else args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the campaign the parsed arguments describe (Ray already initialised); print a JSON summary."""
    import json

    from shoprank.campaign.runner import run_campaign

    result = run_campaign(
        args.campaign,
        args.catalogue,
        fmt=args.fmt,
        checkpoint=args.checkpoint,
        output=args.output,
        encoder=args.encoder,
        shard_size=args.shard_size,
        inner_batch_size=args.batch_size,
        num_actors=args.actors,
        progress=not args.quiet,
    )
    summary = {
        "output": str(Path(result.output).resolve()),
        "report": str(result.report) if result.report else None,
        "complete": result.complete,
        "rows": result.rows,
        "scored": result.scored,
        "quarantined": result.quarantined,
        "filtered": result.filtered,
        "segments": result.segments,
        "shards_computed": result.shards_computed,
        "shards_skipped": result.shards_skipped,
        "zero_shot": result.zero_shot,
        "items_per_s": round(result.items_per_s, 1),
        "elapsed_s": round(result.elapsed_s, 1),
    }
    print(json.dumps(summary))
    return 0 if result.complete else 1


def _job_entrypoint(args: argparse.Namespace) -> str:
    from shoprank.campaign.spec import load_spec

    spec_path = Path(args.campaign).resolve()
    spec = load_spec(spec_path)  # fail fast, before anything is uploaded
    catalogue = Path(args.catalogue).resolve()
    if not catalogue.exists():
        raise ConfigError(f"--catalogue: {catalogue} not found")
    try:
        campaign_arg = str(spec_path.relative_to(Path.cwd()))
    except ValueError:
        campaign_arg = str(spec_path)
    output = Path(args.output or spec.output)
    output = output if output.is_absolute() else (Path.cwd() / output).resolve()
    parts = ["python", "-m", "shoprank.cli.campaign_job", "--campaign", campaign_arg, "--catalogue", str(catalogue)]
    parts += ["--output", str(output), "--encoder", args.encoder]
    parts += ["--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size)]
    if args.fmt:
        parts += ["--format", args.fmt]
    if args.checkpoint:
        parts += ["--checkpoint", str(Path(args.checkpoint).resolve())]
    if args.actors:
        parts += ["--actors", str(args.actors)]
    return shlex.join(parts)


def cmd_submit(args: argparse.Namespace) -> int:
    entrypoint = _job_entrypoint(args)
    client = job_client(args.address)
    runtime_env = job_runtime_env()
    deadline = time.monotonic() + args.retry_s
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint, runtime_env=runtime_env, metadata={"shoprank": "campaign"}
            )
            break
        except RuntimeError as e:  # e.g. "No available agent to submit job" right after `ray start`
            if "try again" not in str(e) or time.monotonic() > deadline:
                raise ShoprankError(f"--address {args.address}: job submission failed ({e})") from None
            time.sleep(3)
    print(f"submitted {job_id}: {entrypoint}")
    if args.no_wait:
        print(f"follow with: shoprank campaign status {job_id} --address {args.address}")
        return 0
    return follow(client, job_id)


def follow(client, job_id: str, poll_s: float = 2.0) -> int:  # noqa: ANN001 - JobSubmissionClient
    """Stream a job's logs (its progress) until it ends; exit code 0 only on success."""
    shown = 0
    while True:
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            sys.stdout.write(logs[shown:])
            sys.stdout.flush()
            shown = len(logs)
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        if status in TERMINAL:
            print(f"job {job_id}: {status}")
            return 0 if status == "SUCCEEDED" else 1
        time.sleep(poll_s)


def cmd_status(args: argparse.Namespace) -> int:
    client = job_client(args.address)
    if args.job_id:
        info = client.get_job_info(args.job_id)
        status = str(info.status).rsplit(".", 1)[-1]
        print(f"{args.job_id}: {status}  {info.entrypoint}")
        if info.message:
            print(f"  {info.message}")
        tail = client.get_job_logs(args.job_id).splitlines()[-args.logs :]
        for line in tail:
            print(f"  | {line}")
        return 0 if status != "FAILED" else 1
    jobs = [j for j in client.list_jobs() if (j.metadata or {}).get("shoprank") == "campaign"]
    if not jobs:
        print("no campaign jobs")
    for j in sorted(jobs, key=lambda j: j.start_time or 0):
        print(f"{j.submission_id or j.job_id}: {str(j.status).rsplit('.', 1)[-1]:<10} {j.entrypoint}")
    return 0
