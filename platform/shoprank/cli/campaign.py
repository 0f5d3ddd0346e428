"""``shoprank campaign``: run a campaign locally or on a cluster, submit it as a Ray job, or check a job.

shoprank campaign run    --campaign SPEC --catalogue PATH [--format F] [--checkpoint CK] [--address RAY]
shoprank campaign run    --campaign SPEC --catalogue PATH [...] --submit http://HEAD:8265 [--no-wait]
shoprank campaign status [JOB_ID] --submit http://HEAD:8265

``campaign submit --submit URL ...`` is the same as ``campaign run --submit URL ...``.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from shoprank.cli.jobs import follow_job, job_client, status_name, submit
from shoprank.cli.options import add_address, add_encoder_runtime, add_no_wait, add_out, add_submit
from shoprank.errors import ConfigError


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of a campaign run (shared by ``campaign run``/``submit`` and ``shoprank.cli.campaign_job``)."""
    p.add_argument("--campaign", required=True, help="campaign spec YAML")
    p.add_argument("--catalogue", required=True, help="catalogue file (canonical parquet/CSV, or any --format)")
    p.add_argument("--format", dest="fmt", default=None, help="catalogue format (default: from the file suffix)")
    p.add_argument("--checkpoint", default=None, help="shoprank checkpoint dir (default: pretrained encoder only)")
    add_out(p, default=None, help="override the spec's output directory")
    p.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"], help="encoder when no checkpoint")
    add_encoder_runtime(p)
    p.add_argument("--shard-size", type=int, default=4096, help="rows per shard (resume granularity)")
    p.add_argument("--batch-size", type=int, default=64, help="items per encoder forward pass")
    p.add_argument("--actors", type=int, default=None, help="scoring actors (default: one per CPU, or per GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_submit_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    add_submit(p, required=required, address_alias=required)
    add_no_wait(p)
    p.add_argument("--retry-s", type=float, default=60.0, help="keep retrying a job server that is still starting")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``campaign run|submit|status`` to the ``shoprank`` parser."""
    p = subparsers.add_parser("campaign", help="score a catalogue for a seasonal campaign (Ray batch job)")
    sub = p.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="run a campaign on a local Ray, on --address, or as a Ray job (--submit)")
    add_job_arguments(run)
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    add_address(run)
    _add_submit_arguments(run, required=False)
    run.set_defaults(func=cmd_run)

    submit = sub.add_parser("submit", help="submit a campaign as a Ray job (same as: run --submit URL)")
    add_job_arguments(submit)
    _add_submit_arguments(submit, required=True)
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="status of one campaign job, or of all campaign jobs")
    status.add_argument("job_id", nargs="?", default=None)
    add_submit(status, required=True, address_alias=True, help="Ray job server (dashboard), e.g. http://HEAD:8265")
    status.add_argument("--logs", type=int, default=10, help="log lines to show for one job")
    status.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> int:
    if args.submit:
        return cmd_submit(args)
    from shoprank.ray_runtime import init_ray

    init_ray(args.address, num_cpus=args.num_cpus)
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
        output=args.out,
        encoder=args.encoder,
        encoder_runtime=args.encoder_runtime,
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
    output = Path(args.out or spec.output)
    output = output if output.is_absolute() else (Path.cwd() / output).resolve()
    parts = ["python", "-m", "shoprank.cli.campaign_job", "--campaign", campaign_arg, "--catalogue", str(catalogue)]
    parts += ["--out", str(output), "--encoder", args.encoder, "--encoder-runtime", args.encoder_runtime]
    parts += ["--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size)]
    if args.fmt:
        parts += ["--format", args.fmt]
    if args.checkpoint:
        parts += ["--checkpoint", str(Path(args.checkpoint).resolve())]
    if args.actors:
        parts += ["--actors", str(args.actors)]
    return shlex.join(parts)


def cmd_submit(args: argparse.Namespace) -> int:
    client, job_id = submit(args.submit, _job_entrypoint(args), metadata={"shoprank": "campaign"}, retry_s=args.retry_s)
    if args.no_wait:
        print(f"follow with: shoprank campaign status {job_id} --submit {args.submit}")
        return 0
    return follow_job(client, job_id)


def cmd_status(args: argparse.Namespace) -> int:
    client = job_client(args.submit)
    if args.job_id:
        info = client.get_job_info(args.job_id)
        status = status_name(info.status)
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
        print(f"{j.submission_id or j.job_id}: {status_name(j.status):<10} {j.entrypoint}")
    return 0
