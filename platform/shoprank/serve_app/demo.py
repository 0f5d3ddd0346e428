"""The serving part of ``shoprank demo``: build an index, serve it over gRPC, search, shut down.

    from shoprank.serve_app.demo import run_demo_serving
    run_demo_serving("out/demo/data", "out/demo", checkpoint=None)

or, as a demo stage, append ``("build the index, serve and search over gRPC", stage_serve)`` to
``shoprank.cli.demo.STAGES`` (it reads ``ctx.state["checkpoint"]`` when training ran before).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

DEMO_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("winter boots", {"month": 12}),
    ("summer dress", {"month": 7}),
    ("frying pan", {"filters": {"in_stock": True}}),
    ("bluetooth headphones", {"filters": {"price_max": 100.0}}),
]


def run_demo_serving(
    data_dir: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    *,
    encoder: str = "minilm",
    k: int = 5,
    queries: list[tuple[str, dict[str, Any]]] | None = None,
    num_actors: int = 1,
) -> dict[str, Any]:
    """Index ``data_dir/catalogue.parquet`` into ``out_dir/index``, serve it, run searches over gRPC.

    Returns a summary (versions, port, per-query top results). Ray is started if needed and
    shut down again only if this function started it; Serve is always shut down.
    """
    import ray

    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.build import build_index
    from shoprank.serve_app import server
    from shoprank.serving.client import SearchClient

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    catalogue = data_dir / "catalogue.parquet" if data_dir.is_dir() else data_dir
    from shoprank.store.server import ensure_local_store, running_store, stop_local_store

    started_ray = not ray.is_initialized()
    from shoprank.hashing import allow_default_salt

    allow_default_salt("the serving demo")  # unless a salt is set (shoprank demo opts in the same way)
    init_ray(serve=True)
    store_dir = out_dir / "store"
    own_store = running_store(store_dir) is None
    summary: dict[str, Any] = {"queries": []}
    served_log = (out_dir / "served").resolve()  # every answer and click, as training data (format served-log)
    shutil.rmtree(served_log, ignore_errors=True)  # this run's only
    try:
        t0 = time.perf_counter()
        m = build_index(catalogue, out_dir / "index", checkpoint=str(checkpoint) if checkpoint else None,
                        encoder=encoder, num_actors=num_actors)  # fmt: skip
        print(f"  index {m['index_version']}: {m['num_items']:,} items, dim {m['dim']}, "
              f"{'hnsw' if m.get('hnsw') else 'exact'} search, model {m['model_version']} "
              f"({time.perf_counter() - t0:.1f}s, Ray Data)")  # fmt: skip
        t0 = time.perf_counter()
        port = server.start_serve()
        app_args: dict[str, Any] = {"index_dir": str((out_dir / "index").resolve()), "encoder": encoder}
        if checkpoint:
            app_args["checkpoint"] = str(Path(checkpoint).resolve())
        app_args["store_url"] = ensure_local_store(store_dir)
        app_args["serving"] = {"served_log_dir": str(served_log)}
        server.deploy(app_args)
        print(f"  serving over gRPC on localhost:{port} ({time.perf_counter() - t0:.1f}s to start)")
        summary.update(port=port, index_version=m["index_version"], model_version=m["model_version"])
        with SearchClient(f"localhost:{port}", timeout=30) as client:
            print(f"  health: {client.health()}")
            for text, opts in queries or DEMO_QUERIES:
                resp = client.search(text, k, user_id="demo-user", **opts)
                zs = ", zero-shot" if resp.intent.zero_shot else ""
                print(f'  search "{text}" {opts or ""} -> intent {resp.intent.label} '
                      f"({resp.intent.confidence:.2f}{zs}), {resp.timings_ms['total']:.0f} ms")  # fmt: skip
                for it in resp.items:
                    print(f"    {it.rank:>2}  {it.item_id:<14} {it.title[:55]:<55} {it.score:.3f}")
                summary["queries"].append(
                    {"query": text, "top": [it.item_id for it in resp.items], "intent": resp.intent.label}
                )
            if resp.zero_shot_tasks:
                print(f"  zero-shot scores (no trained head): {', '.join(resp.zero_shot_tasks)}")
            print(f"  served by model {resp.model_version}, index {resp.index_version}")
            top = resp.items[0].item_id if resp.items else ""
            ack = client.feedback([{"request_id": resp.request_id, "user_id": "demo-user", "query": text,
                                    "item_id": top, "type": "click", "position": 1}])  # fmt: skip
            print(f"  feedback: a click on {top} stored ({ack.accepted} accepted) in {app_args['store_url']}")
            summary["feedback_accepted"] = ack.accepted
    finally:
        from ray import serve

        try:
            serve.shutdown()
        except Exception:  # noqa: BLE001 - best effort
            pass
        if started_ray:
            ray.shutdown()
        if own_store:
            stop_local_store(store_dir)
    summary["served_log"] = _served_log_summary(served_log)
    return summary


def _served_log_summary(path: Path) -> dict[str, int]:
    """What the served-results log holds once the app is down, read back as training events."""
    import polars as pl

    from shoprank.data.sources.served_log import load_served_log
    from shoprank.errors import DataError

    try:
        events = load_served_log(path).frames["events"]
    except DataError as e:
        print(f"  served log: {e}")
        return {}
    counts = dict(events.group_by("event_type").len().iter_rows())
    clicks = events.filter(pl.col("event_type") == "click")
    print(f"  served log {path}: {counts.get('impression', 0)} shown items, {counts.get('click', 0)} click(s) "
          f"joined to their search (positions {clicks['position'].to_list()}): training data, format served-log")
    return {k: int(v) for k, v in counts.items()}


def stage_serve(ctx: Any) -> None:
    """``shoprank demo`` stage: index the demo catalogue, serve it and search over gRPC."""
    run_demo_serving(ctx.data_dir, ctx.out, ctx.state.get("checkpoint"))
