"""Benchmark the campaign scoring job: Ray vs a single-process floor, node scaling, memory vs size.

    python bench/score_catalogue.py --quick        # minutes on 2 cores
    python bench/score_catalogue.py                # full sizes (Instacart 49,688 items; 1M synthetic)

Four measurements, each printed as a ratio measured side by side in this run:

1. **Ray vs floor** (real all-MiniLM-L6-v2, Instacart catalogue or a slice of it): items/s of
   the Ray Data job (actor pool, one actor per core, one torch thread each) against a plain
   in-process loop over the same shards with the same model, scorer and batch size (torch
   using every core). Both include loading the model(s). Target: >= 0.8x.
1b. **Ray vs floor, 1M synthetic items** (``--only floor-1m``): the same comparison over the whole
   1M-item synthetic catalogue with the *tiny* encoder on both sides (MiniLM would need ~1.5 h
   per side on 2 cores).
2. **Nodes** (real MiniLM, a smaller Instacart slice): a ``ray.cluster_utils.Cluster`` with one
   1-CPU node, then two; items/s with one actor per node.
4. **Encoder runtime** (``--only runtime``; issue 18): the same floor loop with the int8 ONNX
   encoder (``encoder_runtime="onnx-int8"``) against today's torch floor, and the Ray job with the
   int8 encoder against both floors, all in this run on the same catalogue (whole Instacart, or
   ``--slice N`` items). Targets: int8 floor >= 2x torch floor; Ray int8 / int8 floor >= 0.8x.
3. **Memory vs catalogue size** (the *tiny* random encoder, because full MiniLM on 1M items
   would take ~50 minutes on 2 cores): synthetic catalogues of 50k .. 1M items, each job in a
   fresh process; peak RSS of the driver and of the whole Ray process tree (sampled from /proc).

Writes ``bench.json`` and ``bench.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shoprank.ray_runtime import init_ray

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local, throwaway clusters only
os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")  # busy 2-core machines start nodes slowly

SHARED = Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data"))
SPEC = {
    "name": "bench",
    "months": [12, 1, 2],
    "themes": ["christmas dinner", "hot chocolate and winter snacks"],
    "segments": {"by": "category"},
    "top_n": 100,
}
PAGE = os.sysconf("SC_PAGE_SIZE")
ROW_GROUP = 16_384


# -- /proc sampling (no psutil in the environment) ---------------------------------------
def _tree_rss(root: int) -> int:
    """Sum of RSS bytes of ``root`` and all its descendants."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, []))
    return total


class PeakSampler:
    """Samples the RSS of this process tree every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- catalogues ----------------------------------------------------------------------------
def instacart_catalogue(work: Path, n: int | None) -> Path:
    """Instacart products as a canonical parquet catalogue (first ``n`` items, or all)."""
    from shoprank.data.loaders import load

    path = work / f"instacart-{n or 'all'}.parquet"
    if not path.exists():
        src = SHARED / "instacart" / "products_noheader.csv"
        if not src.exists():
            sys.exit(f"needs {src} (../shared/data)")
        cat = load(src, "instacart")["catalogue"]
        (cat.head(n) if n else cat).write_parquet(path)
    return path


def synthetic_catalogue(work: Path, n: int) -> Path:
    """A synthetic canonical catalogue of n items (shoprank.data.synth, streamed; generated once)."""
    import polars as pl

    big = work / "synth-1000000" / "catalogue.parquet"
    path = work / f"synth-{n}-rg{ROW_GROUP}.parquet"
    if path.exists():
        return path
    if not big.exists():
        print("generating the 1M-item synthetic catalogue (once) ...", flush=True)
        subprocess.run(
            [sys.executable, "-c", "import sys; from shoprank.data.synth import write_dataset; "
             "write_dataset(sys.argv[1], 1_000_000, seed=0, progress=True)", str(big.parent)],
            check=True,
        )  # fmt: skip
    # Every size gets the same row-group size, so a shard read decodes the same amount of data.
    pl.scan_parquet(big).head(n).sink_parquet(path, row_group_size=ROW_GROUP)
    return path


# -- measurements --------------------------------------------------------------------------
def floor_items_per_s(
    catalogue: Path, shard_size: int, batch_size: int, encoder: str = "minilm", encoder_runtime: str = "torch"
) -> dict[str, Any]:
    """Single process, plain loop: same shards, same scorer and model, same batch size."""
    import polars as pl
    import torch
    from shoprank.campaign import source
    from shoprank.campaign.scoring import CampaignScorer
    from shoprank.campaign.spec import parse_spec

    spec = parse_spec({**SPEC, "output": "unused"})
    t0 = time.perf_counter()
    scorer = CampaignScorer(
        spec.model_dump(mode="json"), encoder=encoder, inner_batch_size=batch_size, encoder_runtime=encoder_runtime
    )
    n = source.count_rows(source.scan(catalogue, "parquet"))
    rows = 0
    for shard in source.plan_shards(n, shard_size):
        table = source.read_shard(str(catalogue), "parquet", shard.index, shard.start, shard.length, {}, "/tmp/q")
        rows += pl.from_arrow(scorer(table)).height
    dt = time.perf_counter() - t0
    return {
        "items": rows,
        "seconds": round(dt, 2),
        "items_per_s": round(rows / dt, 1),
        "torch_threads": torch.get_num_threads(),
        "encoder_runtime": scorer.model.encoder_runtime,
    }


def stop_after(max_shards: int | None):  # noqa: ANN201 - the runner's on_shard callback, or None
    """An ``on_shard`` callback that stops the campaign after ``max_shards`` scored shards."""
    if not max_shards:
        return None
    done: list[int] = []

    def on_shard(k: int) -> bool:
        done.append(k)
        return len(done) >= max_shards

    return on_shard


def ray_items_per_s(
    catalogue: Path,
    out: Path,
    shard_size: int,
    batch_size: int,
    encoder: str,
    actors: int | None,
    max_shards: int | None = None,
    encoder_runtime: str = "torch",
) -> dict[str, Any]:
    from shoprank.campaign import parse_spec, run_campaign

    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    spec = parse_spec({**SPEC, "output": str(out)})
    t0 = time.perf_counter()
    r = run_campaign(spec, catalogue, encoder=encoder, shard_size=shard_size, inner_batch_size=batch_size,
                     num_actors=actors, progress=False, on_shard=stop_after(max_shards),
                     encoder_runtime=encoder_runtime)  # fmt: skip
    dt = time.perf_counter() - t0
    items = r.rows if r.complete else min(r.rows, r.shards_computed * shard_size)
    return {"items": items, "seconds": round(dt, 2), "items_per_s": round(items / dt, 1), "actors": actors,
            "complete": r.complete, "shards_scored": r.shards_computed, "shards_total": r.shards_total}  # fmt: skip


def bench_ray_vs_floor(cat: Path, work: Path, shard_size: int, batch_size: int, encoder: str) -> dict[str, Any]:
    """The Ray job and the plain loop over the same whole catalogue, model and batch size."""
    import ray

    cores = os.cpu_count() or 1
    print(f"[1] Ray vs floor on {cat.name} ({encoder}, batch {batch_size}, shard {shard_size}, {cores} cores)",
          flush=True)  # fmt: skip
    floor = floor_items_per_s(cat, shard_size, batch_size, encoder)
    print(f"    floor: {floor}", flush=True)
    init_ray(num_cpus=cores, with_runtime_env=False)
    try:
        job = ray_items_per_s(cat, work / "out-ray", shard_size, batch_size, encoder, cores)
    finally:
        ray.shutdown()
    ratio = job["items_per_s"] / floor["items_per_s"]
    print(f"    ray:   {job}\n    ratio ray/floor = {ratio:.2f}x (target >= 0.8x)", flush=True)
    return {"catalogue": cat.name, "encoder": encoder, "floor": floor, "ray": job, "ratio": round(ratio, 3)}


def bench_runtime(
    cat: Path, work: Path, shard_size: int, batch_size: int, runtime: str = "onnx-int8"
) -> dict[str, Any]:
    """Floor (torch), floor (``runtime``) and the Ray job (``runtime``) on the same catalogue, back to back."""
    import ray

    cores = os.cpu_count() or 1
    print(f"[4] encoder runtime: {runtime} vs torch on {cat.name} (MiniLM, batch {batch_size}, shard {shard_size})",
          flush=True)  # fmt: skip
    # the ONNX files are exported (and gated) once before anything is timed, as a deployment would have them
    from shoprank.model.checkpoint import load_model

    load_model(None, encoder="minilm", encoder_runtime=runtime)
    torch_floor = floor_items_per_s(cat, shard_size, batch_size, "minilm")
    print(f"    floor torch: {torch_floor}", flush=True)
    fast_floor = floor_items_per_s(cat, shard_size, batch_size, "minilm", runtime)
    print(f"    floor {runtime}: {fast_floor}", flush=True)
    init_ray(num_cpus=cores, with_runtime_env=False)
    try:
        job = ray_items_per_s(cat, work / "out-ray-runtime", shard_size, batch_size, "minilm", cores,
                              encoder_runtime=runtime)  # fmt: skip
    finally:
        ray.shutdown()
    floor_gain = fast_floor["items_per_s"] / torch_floor["items_per_s"]
    job_gain = job["items_per_s"] / torch_floor["items_per_s"]
    ray_vs_floor = job["items_per_s"] / fast_floor["items_per_s"]
    print(f"    ray {runtime}: {job}\n    {runtime} floor / torch floor = {floor_gain:.2f}x (target >= 2x); "
          f"ray {runtime} / torch floor = {job_gain:.2f}x; ray/floor ({runtime}) = {ray_vs_floor:.2f}x "
          "(target >= 0.8x)", flush=True)  # fmt: skip
    return {"catalogue": cat.name, "runtime": runtime, "torch_floor": torch_floor, "runtime_floor": fast_floor,
            "ray": job, "floor_gain": round(floor_gain, 3), "ray_gain_over_torch_floor": round(job_gain, 3),
            "ray_vs_floor": round(ray_vs_floor, 3)}  # fmt: skip


def bench_nodes(work: Path, n: int, shard_size: int, batch_size: int) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    cat = instacart_catalogue(work, n)
    print(f"[2] nodes: ray.cluster_utils.Cluster, 1 CPU per node, {cat.name} (MiniLM)", flush=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    rows = []
    try:
        init_ray(cluster.address, with_runtime_env=False)
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
            res = ray_items_per_s(cat, work / f"out-nodes-{nodes}", shard_size, batch_size, "minilm", nodes)
            res["nodes"] = nodes
            rows.append(res)
            print(f"    {nodes} node(s): {res}", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    speedup = rows[1]["items_per_s"] / rows[0]["items_per_s"]
    print(f"    2 nodes / 1 node = {speedup:.2f}x", flush=True)
    return {"catalogue": cat.name, "runs": rows, "speedup_2_vs_1": round(speedup, 3)}


def memory_child(catalogue: Path, out: Path, shard_size: int, max_shards: int | None) -> None:
    """One memory run in this (fresh) process; prints a JSON line."""
    import ray

    cores = os.cpu_count() or 1
    init_ray(num_cpus=cores, with_runtime_env=False)
    with PeakSampler() as sampler:
        res = ray_items_per_s(catalogue, out, shard_size, 256, "tiny", cores, max_shards)
    res["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    res["tree_peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    ray.shutdown()
    print("RESULT " + json.dumps(res), flush=True)


def bench_memory(work: Path, sizes: list[int], shard_size: int, max_shards: int) -> dict[str, Any]:
    what = f"first {max_shards} shards of each" if max_shards else "whole catalogues"
    print(f"[3] memory vs catalogue size (tiny encoder), sizes {sizes}, {what}", flush=True)
    rows = []
    for n in sizes:
        cat = synthetic_catalogue(work, n)
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(cat), "--out", str(work / f"out-mem-{n}"),
             "--shard-size", str(shard_size), "--memory-shards", str(max_shards)],
            capture_output=True, text=True,
        )  # fmt: skip
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"memory run for {n} items failed")
        res = json.loads(line[-1][7:])
        res["catalogue_items"] = n
        rows.append(res)
        print(f"    {n:>9} items: {res}", flush=True)
    growth = rows[-1]["tree_peak_rss_mb"] / rows[0]["tree_peak_rss_mb"]
    driver_growth = rows[-1]["driver_peak_rss_mb"] / rows[0]["driver_peak_rss_mb"]
    print(f"    peak RSS {sizes[-1]} vs {sizes[0]} items: tree {growth:.2f}x, driver {driver_growth:.2f}x", flush=True)
    return {
        "max_shards": max_shards or None,
        "runs": rows,
        "tree_peak_growth": round(growth, 3),
        "driver_peak_growth": round(driver_growth, 3),
    }


def write_runtime_md(results: dict[str, Any], path: Path) -> None:
    """The encoder-runtime section as markdown (atomically)."""
    from shoprank.files import atomic_write_text

    r = results["encoder_runtime"]
    t, f, j = r["torch_floor"], r["runtime_floor"], r["ray"]
    load = ", ".join(f"{x:.1f}" for x in results["load_avg_start"])
    text = f"""# bench/score_catalogue.py --only runtime — campaign scoring with the {r["runtime"]} encoder (issue 18)

{r["catalogue"]}, pretrained all-MiniLM-L6-v2, batch 64, {results["cores"]} cores (load average at start {load}).
Every figure from one run, back to back on the same catalogue, scorer and batch size.

| side | items | seconds | items/s |
| --- | --- | --- | --- |
| floor, torch fp32 ({t["torch_threads"]} threads) | {t["items"]:,} | {t["seconds"]} | {t["items_per_s"]} |
| floor, {r["runtime"]} | {f["items"]:,} | {f["seconds"]} | {f["items_per_s"]} |
| Ray Data job, {r["runtime"]} ({j["actors"]} actors) | {j["items"]:,} | {j["seconds"]} | {j["items_per_s"]} |

- {r["runtime"]} floor / torch floor: **{r["floor_gain"]:.2f}×** (target ≥ 2×)
- Ray job ({r["runtime"]}) / torch floor: **{r["ray_gain_over_torch_floor"]:.2f}×**
- Ray job / floor, both {r["runtime"]}: **{r["ray_vs_floor"]:.2f}×** (target ≥ 0.8×)
"""
    atomic_write_text(path, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller slices (minutes on 2 cores)")
    p.add_argument("--out", default=str(REPO / "out" / "bench" / "score_catalogue"))
    p.add_argument("--work", default="/tmp/shoprank-bench-score-catalogue", help="cached catalogues")
    p.add_argument("--only", choices=["floor", "floor-1m", "nodes", "memory", "runtime"], default=None)
    p.add_argument("--slice", type=int, default=None, help="[4] runtime: first N Instacart items (default: all)")
    p.add_argument("--runtime", default="onnx-int8", choices=["onnx", "onnx-int8"], help="[4]: the runtime to compare")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--memory-shards", type=int, default=None, help="memory runs stop after this many shards (0: all)")
    p.add_argument("--memory-sizes", default=None, help="comma-separated catalogue sizes for the memory runs")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(Path(args.memory_child), Path(args.out), args.shard_size or 8192, args.memory_shards or None)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    results: dict[str, Any] = {"quick": quick, "cores": os.cpu_count(), "load_avg_start": os.getloadavg()}
    if args.only in (None, "floor"):
        cat = instacart_catalogue(work, 2048 if quick else None)
        results["ray_vs_floor"] = bench_ray_vs_floor(cat, work, args.shard_size or 256, 64, "minilm")
    if args.only in (None, "floor-1m"):
        # MiniLM would need ~1.5 h per side for 1M items on 2 cores: the tiny encoder (same code
        # path, same architecture, fewer/smaller layers) runs both sides over the whole catalogue.
        cat = synthetic_catalogue(work, 50_000 if quick else 1_000_000)
        results["ray_vs_floor_synthetic"] = bench_ray_vs_floor(cat, work, args.shard_size or 8192, 256, "tiny")
    if args.only in (None, "runtime"):
        cat = instacart_catalogue(work, args.slice or (2048 if quick else None))
        results["encoder_runtime"] = bench_runtime(cat, work, args.shard_size or 256, 64, args.runtime)
    if args.only in (None, "nodes"):
        results["nodes"] = bench_nodes(work, 512 if quick else 4096, args.shard_size or 128, 64)
    if args.only in (None, "memory"):
        sizes = [50_000, 200_000, 1_000_000] if not quick else [50_000, 1_000_000]
        if args.memory_sizes:
            sizes = [int(x) for x in args.memory_sizes.split(",")]
        max_shards = args.memory_shards if args.memory_shards is not None else (4 if quick else 0)
        results["memory"] = bench_memory(work, sizes, args.shard_size or (4096 if quick else 8192), max_shards)
    results["load_avg_end"] = os.getloadavg()
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    if "encoder_runtime" in results:
        write_runtime_md(results, REPO / "bench" / "results" / "score_catalogue_runtime.md")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
