"""Ray job: embed a catalogue with Ray Data and write a versioned index artefact.

    ray job submit --working-dir . -- python -m jobs.build_index --catalogue cat.parquet --out out/index
    python -m jobs.build_index --catalogue cat.parquet --out out/index       # local Ray (or --address)

The same options as ``shoprank index build``; prints the artefact's summary as JSON. The logic
lives in shoprank.retrieval.build.
"""

from __future__ import annotations

import argparse
import json
import sys

from shoprank.cli.options import warn_deprecated
from shoprank.cli.serve import add_index_arguments
from shoprank.ray_runtime import init_ray


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.build_index", description=__doc__.splitlines()[0])
    add_index_arguments(p)
    args = p.parse_args(argv)
    warn_deprecated(args, "build_index")

    from shoprank.retrieval.build import build_index

    init_ray(args.address, with_runtime_env=False)  # joins the job's cluster when submitted
    manifest = build_index(
        args.catalogue, args.out, checkpoint=args.checkpoint, encoder=args.encoder, fmt=args.format,
        num_actors=args.num_actors, batch_size=args.batch_size, hnsw_threshold=args.hnsw_threshold,
        shards=args.shards, compressed_threshold=args.compressed_threshold, encoder_runtime=args.encoder_runtime,
    )  # fmt: skip
    summary = {k: manifest[k] for k in ("index_version", "model_version", "num_items", "dim", "total_seconds")}
    print(json.dumps({"out": args.out, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
