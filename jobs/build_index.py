"""Ray job: embed a catalogue with Ray Data and write a versioned index artefact.

    ray job submit --working-dir . -- python jobs/build_index.py --catalogue cat.parquet --out out/index
    python jobs/build_index.py --catalogue cat.parquet --out out/index       # local Ray

Same as ``shoprank index build``; the logic lives in shoprank.retrieval.build.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogue", required=True)
    p.add_argument("--format", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"])
    p.add_argument("--out", required=True)
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hnsw-threshold", type=int, default=50_000)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    args = p.parse_args(argv)

    import ray
    from shoprank.retrieval.build import build_index

    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    manifest = build_index(
        args.catalogue, args.out, checkpoint=args.checkpoint, encoder=args.encoder, fmt=args.format,
        num_actors=args.num_actors, batch_size=args.batch_size, hnsw_threshold=args.hnsw_threshold,
    )  # fmt: skip
    summary = {k: manifest[k] for k in ("index_version", "model_version", "num_items", "dim", "total_seconds")}
    print(json.dumps({"out": args.out, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
