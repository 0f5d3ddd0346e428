"""``shoprank demo``: the whole platform end to end on the embedded synthetic data.

The demo hashes user ids with ``$SHOPRANK_ID_SALT`` / ``$SHOPRANK_ID_SALT_FILE`` when set, else
with the public default salt, which it opts in to explicitly (a loud warning; serving refuses
that salt everywhere else: docs/privacy.md).

The demo is a list of small stage functions that share one :class:`DemoContext`. Each stage
prints what it did. Later issues append stages (train, build the index, serve and search,
score a campaign) to ``STAGES``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoprank.errors import DataError


@dataclass
class DemoContext:
    out: Path
    items: int
    seed: int
    state: dict[str, Any] = field(default_factory=dict)  # what earlier stages made, for later ones

    @property
    def data_dir(self) -> Path:
        return self.out / "data"


def stage_synth(ctx: DemoContext) -> None:
    """Synthesise the default data set (deterministic) into OUT/data."""
    from shoprank.data.synth import write_dataset

    manifest = write_dataset(ctx.data_dir, n_items=ctx.items, seed=ctx.seed)
    ctx.state["manifest"] = manifest
    print(f"  wrote {ctx.data_dir}:")
    for kind, n in manifest["rows"].items():
        print(f"    {kind + '.parquet':<22} {n:>10,} rows")


def stage_validate(ctx: DemoContext) -> None:
    """Load the files back through the canonical loader; any quarantined row is a failure."""
    from shoprank.data.loaders import load
    from shoprank.data.stats import dataset_stats

    result = load(ctx.data_dir, "canonical")
    if result.quarantine.height:
        raise DataError(
            f"{ctx.data_dir}: synthetic data has {result.quarantine.height} invalid rows "
            f"({result.quarantined_by_reason()})"
        )
    ctx.state["frames"] = result.frames
    stats = dataset_stats(result.frames)
    cat = stats["catalogue"]["distributions"]
    print(f"  validated {result.rows_read:,} rows, 0 quarantined")
    print("  departments: " + ", ".join(f"{k} {v:,}" for k, v in cat.get("top-level category", [])))
    print("  seasons:     " + ", ".join(f"{k} {v:,}" for k, v in cat.get("season", [])))
    ev = stats["events"]["distributions"]
    print("  events:      " + ", ".join(f"{k} {v:,}" for k, v in ev.get("event_type", [])))


def stage_ray(ctx: DemoContext) -> None:
    """Start one local Ray for every later stage (Serve's process env applied: the serve stage's
    gRPC proxy starts from this environment)."""
    import os

    import ray

    from shoprank.ray_runtime import init_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user Ray on this machine
    init_ray(serve=True)
    res = ray.cluster_resources()
    print(f"  local Ray: {res.get('CPU', 0):.0f} CPUs, {res.get('GPU', 0):.0f} GPUs")


def stage_train(ctx: DemoContext) -> None:
    """Fine-tune MiniLM briefly on the synthetic data with Ray Train and print its evaluation."""
    from shoprank.train.demo import run_demo_training

    ctx.state["checkpoint"] = run_demo_training(ctx.out / "train", data_dir=ctx.data_dir)
    print(f"  checkpoint: {ctx.state['checkpoint']}")


def stage_serve(ctx: DemoContext) -> None:
    """Build the ANN index, serve the deployment graph over gRPC and run searches through it."""
    from shoprank.serve_app.demo import run_demo_serving

    run_demo_serving(ctx.data_dir, ctx.out, ctx.state.get("checkpoint"))


def stage_campaign(ctx: DemoContext) -> None:
    """Score a seasonal campaign over the whole catalogue with Ray Data and write its report."""
    from shoprank.campaign.demo import run_demo_campaign

    report = run_demo_campaign(
        ctx.data_dir / "catalogue.parquet",
        ctx.out / "campaign",
        ctx.state.get("checkpoint"),
        spec_path=Path("campaigns/demo.yaml") if Path("campaigns/demo.yaml").is_file() else None,
    )
    print(f"  report: {report}")


def stage_triton(ctx: DemoContext) -> None:
    """Export the ranker to a real Triton server and check it scores like the in-process ranker."""
    import numpy as np

    from shoprank.model.checkpoint import load_model, model_version
    from shoprank.serving.pipeline import make_backend
    from shoprank.triton.export import export_ranker
    from shoprank.triton.server import TritonServer, ensure_env

    model, manifest = load_model(ctx.state.get("checkpoint"))
    if not model.pair_tasks:
        print("  the model has no pairwise ranker heads; nothing to serve from Triton")
        return
    ensure_env(quiet=False)
    version = model_version(manifest, model.config.encoder)
    repo = export_ranker(model, ctx.out / "triton-repo", manifest=manifest).parent
    texts = ["warm winter boots", "linen summer dress", "garden hose", "kids toy car"]
    emb = model.embed(texts)
    rng = np.random.default_rng(0)
    items = emb[rng.integers(0, len(texts), 64)]
    num = rng.random((64, 3)).astype(np.float32)
    month = np.full(64, 12)
    with TritonServer(repo, log_file=ctx.out / "triton.log") as server:
        triton = make_backend("triton", model, url=server.grpc_url, expected_version=version, failover="unavailable")
        remote = triton.score(emb[0], items, num, month)
    local = make_backend("inprocess", model).score(emb[0], items, num, month)
    diff = max(float(np.abs(remote.scores[t] - local.scores[t]).max()) for t in local.scores)
    print(f"  Triton served ranker {version}: 64 candidates, max |Triton - in-process| = {diff:.2e}")


Stage = tuple[str, Callable[[DemoContext], None]]

# (title, function) in order; later issues append their stages here.
STAGES: list[Stage] = [
    ("synthesise the default data", stage_synth),
    ("validate it", stage_validate),
    ("start a local Ray", stage_ray),
    ("fine-tune the multi-task model (Ray Train) and evaluate it", stage_train),
    ("build the index, serve over gRPC (Ray Serve) and search", stage_serve),
    ("score a seasonal campaign (Ray Data + Polars)", stage_campaign),
    ("rank through a real Triton server (tritonclient)", stage_triton),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole platform end to end on the embedded synthetic data",
        description="Synthesise the default data set, validate it, and run every later stage of the platform "
        "on it, printing what each stage made.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    p.add_argument("--items", type=int, default=10_000, help="synthetic catalogue size (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the synthetic data (default: 0)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if args.items < 1:
        raise DataError(f"--items must be at least 1, got {args.items}")
    from shoprank.hashing import allow_default_salt

    allow_default_salt("shoprank demo")  # no-op when a salt is configured; before Ray starts: workers inherit it
    ctx = DemoContext(out=args.out, items=args.items, seed=args.seed)
    ctx.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for i, (title, fn) in enumerate(STAGES, 1):
        print(f"[{i}/{len(STAGES)}] {title}")
        t0 = time.perf_counter()
        fn(ctx)
        print(f"  ({time.perf_counter() - t0:.1f}s)")
    print(f"demo finished in {time.perf_counter() - t_all:.1f}s; outputs in {ctx.out}")
    return 0
