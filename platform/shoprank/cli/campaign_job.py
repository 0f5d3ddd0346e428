"""Ray job: score a whole catalogue for a seasonal campaign.

    ray job submit --working-dir . -- python -m jobs.score_catalogue \\
        --campaign campaigns/winter-2026.yaml --catalogue PATH [--format F] [--checkpoint CK] [--out DIR]

Connects to the cluster the job runs on (or starts a local Ray when run directly), scores
every shard on a Ray Data actor pool, and writes ranked parquet plus the report under the
spec's ``output``. Rerunning the same command resumes: finished shards are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

from shoprank.cli.campaign import add_job_arguments, run_from_args
from shoprank.cli.options import warn_deprecated
from shoprank.errors import ShoprankError
from shoprank.ray_runtime import init_ray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.score_catalogue", description=__doc__.splitlines()[0])
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    warn_deprecated(args, "score_catalogue")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    init_ray(with_runtime_env=False)  # joins the job's cluster (and keeps the job's runtime env) when submitted
    try:
        return run_from_args(args)
    except ShoprankError as e:
        print(f"score_catalogue: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
