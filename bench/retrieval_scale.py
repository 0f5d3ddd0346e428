"""Retrieval past one machine's memory: compressed (IVF-PQ + exact re-scoring) and sharded indexes.

    flock /tmp/shoprank-ray.lock python bench/retrieval_scale.py                 # 10M items (~20-30 min)
    flock /tmp/shoprank-ray.lock python bench/retrieval_scale.py --items 200000  # quick

One run, side by side, on N synthetic clustered unit vectors (dim 384, generated a chunk at a time
from a seed, written straight into an fp16 memory map: never all in fp32 memory at once) in a
scratch directory (default under /tmp, deleted at the end):

- the sharded artefact (S = max ``--shards``) is built by the real path (``finish_artefact``: one
  IVF-PQ quantiser trained on a sample, then one Ray task per shard); the artefacts for fewer
  shards (and the unsharded one) are derived from its shard indexes by merging their inverted lists
  (the same codes, so the same candidates), sharing the rows by hard link: a bench shortcut that
  saves two full builds;
- bytes per item in RAM (PQ codes + ids + centroids/codebooks) vs fp32 rows; build times;
- recall@k of the compressed index vs exact search on a ``--queries`` sample (exact ground truth
  computed in chunks over the memory map) and queries/s of both on the same queries and threads;
- the retriever over Ray Serve: the unsharded index (one CandidateRetriever) vs S shards (one
  RetrieverShard deployment each behind the ShardedRetriever router): recall and identical top-k,
  p50/p95 latency of single-query calls, and each replica's peak RSS (VmHWM, which counts the
  memory-mapped row pages it touched) next to this driver's.

Results: bench/results/retrieval_scale.{json,md} (atomically; ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
CHUNK = 100_000


def gb(x: float) -> float:
    return round(x / 1e9, 3)


def peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """A process's peak resident set (VmHWM, counting the memory-mapped file pages it touched, which live in
    the shared page cache) and its private anonymous memory now (RssAnon: heap, PQ codes), in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) * 1024
    return {"peak_rss": out.get("VmHWM", 0), "anon": out.get("RssAnon", 0), "file": out.get("RssFile", 0)}


def replica_rss(deployments: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Memory of each live Serve replica of ``deployments`` (matched by its process title)."""
    import psutil

    out: dict[str, dict[str, int]] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if "ServeReplica" in title and any(f":{d}" in title for d in deployments):
            name = title.split("ServeReplica:")[-1].split()[0]
            try:
                out[name] = proc_memory(p.info["pid"])
            except OSError:
                pass
    return out


# -- data ----------------------------------------------------------------------------------------
def generate(path: Path, n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Write n clustered unit rows (fp16) to ``path`` a chunk at a time; the memory map."""
    from shoprank.retrieval.synthetic import cluster_centres, clustered_chunk

    centres = cluster_centres(dim, clusters, seed)
    emb = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for c, a in enumerate(range(0, n, CHUNK)):
        emb[a : a + CHUNK] = clustered_chunk(centres, min(CHUNK, n - a), seed, c).astype(np.float16)
    emb.flush()
    return emb


def exact_truth(emb: np.ndarray, q: np.ndarray, k: int, chunk: int = 500_000) -> tuple[np.ndarray, float]:
    """Exact top-k (positions) of every query over the memory map, a chunk of rows at a time (faiss's
    brute-force kNN: BLAS products + heaps, the fastest exact search here); seconds."""
    import faiss

    t0 = time.perf_counter()
    best_pos = np.zeros((q.shape[0], 0), np.int64)
    best_sc = np.zeros((q.shape[0], 0), np.float32)
    for a in range(0, emb.shape[0], chunk):
        rows = np.ascontiguousarray(emb[a : a + chunk], dtype=np.float32)
        sc, pos = faiss.knn(q, rows, min(k, rows.shape[0]), metric=faiss.METRIC_INNER_PRODUCT)
        cand_sc, cand_pos = np.concatenate([best_sc, sc], axis=1), np.concatenate([best_pos, pos + a], axis=1)
        top = np.argsort(-cand_sc, axis=1, kind="stable")[:, :k]
        best_sc, best_pos = np.take_along_axis(cand_sc, top, 1), np.take_along_axis(cand_pos, top, 1)
    return best_pos, time.perf_counter() - t0


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


# -- artefacts -----------------------------------------------------------------------------------
def build_sharded(root: Path, n: int, dim: int, shards: int, args: argparse.Namespace) -> tuple[Path, dict]:
    """The S-shard artefact through the real build path; (dir, timings)."""
    import polars as pl
    from shoprank.files import staged_dir
    from shoprank.retrieval.artefact import EMBEDDINGS, finish_artefact
    from shoprank.retrieval.compressed import IVFPQParams, train_ivfpq

    out = root / f"s{shards}"
    times: dict[str, float] = {}
    params = IVFPQParams(nprobe=args.nprobe, rerank_factor=args.rerank_factor)
    with staged_dir(out) as tmp:
        t = time.perf_counter()
        emb = generate(tmp / EMBEDDINGS, n, dim, args.clusters, args.seed)
        times["generate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = train_ivfpq(emb, params.resolved(n, dim))
        times["train_s"] = time.perf_counter() - t
        items = pl.DataFrame({"item_id": pl.int_range(0, n, eager=True).cast(pl.Utf8)})
        t = time.perf_counter()
        finish_artefact(tmp, items, model_version="synthetic", index_version=f"idx-bench-{n}", compressed_threshold=1,
                        ivfpq=params, shards=shards, trained=trained)  # fmt: skip
        times["encode_shards_s"] = time.perf_counter() - t
        del emb
    return out, times


def derive(src: Path, dst: Path, groups: list[list[int]]) -> Path:
    """An artefact with fewer shards (one group: unsharded) from ``src``'s shard indexes, merged (bench only)."""
    import json

    from shoprank.files import sha256_file, staged_dir
    from shoprank.retrieval.artefact import EMBEDDINGS, ITEMS, MANIFEST, read_index_manifest
    from shoprank.retrieval.compressed import IVFPQ_FILE, read_ivfpq, write_ivfpq
    from shoprank.retrieval.shards import shard_name

    m = read_index_manifest(src)
    with staged_dir(dst) as tmp:
        for f in (EMBEDDINGS, ITEMS):
            os.link(src / f, tmp / f)
        entries = []
        for g, members in enumerate(groups):
            first = m["shards"][members[0]]
            index = read_ivfpq(src / first["name"] / IVFPQ_FILE)
            for s in members[1:]:
                e = m["shards"][s]
                index.merge_from(read_ivfpq(src / e["name"] / IVFPQ_FILE), int(e["lo"]) - int(first["lo"]))
            name = "" if len(groups) == 1 else shard_name(g)
            (tmp / name).mkdir(exist_ok=True)
            write_ivfpq(index, tmp / name / IVFPQ_FILE)
            hi = m["shards"][members[-1]]["hi"]
            entries.append({"name": name, "lo": first["lo"], "hi": hi, "kind": "ivfpq", "params": first["params"],
                            "files": {IVFPQ_FILE: sha256_file(tmp / name / IVFPQ_FILE)}})  # fmt: skip
        manifest = dict(m)
        if len(groups) == 1:
            manifest.update(shards=None, ann={"kind": "ivfpq", **entries[0]["params"]})
            manifest["files"] = {**m["files"], IVFPQ_FILE: entries[0]["files"][IVFPQ_FILE]}
        else:
            manifest["shards"] = entries
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return dst


# -- serving -------------------------------------------------------------------------------------
def serve_run(index_dir: Path, q: np.ndarray, k: int, latency_queries: int) -> dict[str, Any]:
    """Deploy the retriever for ``index_dir`` (sharded or not) alone, search every query, time single calls."""
    from ray import serve
    from shoprank.retrieval.artefact import read_index_manifest
    from shoprank.serve_app.retriever import CandidateRetriever, RetrieverShard, ShardedRetriever
    from shoprank.serving.stages import RetrieveJob

    shards = read_index_manifest(index_dir).get("shards") or []
    opts = {"ray_actor_options": {"num_cpus": 0.1}}
    if shards:
        handles = [RetrieverShard.options(name=f"RetrieverShard{s}", **opts).bind(str(index_dir), s, {})
                   for s in range(len(shards))]  # fmt: skip
        app = ShardedRetriever.options(**opts).bind(str(index_dir), handles, {})
    else:
        app = CandidateRetriever.options(**opts).bind(str(index_dir), {})
    name = f"rs{len(shards) or 1}"
    t = time.perf_counter()
    handle = serve.run(app, name=name, route_prefix=None)
    deploy_s = time.perf_counter() - t
    found: list[np.ndarray] = []
    for a in range(0, q.shape[0], 50):
        res = handle.remote([RetrieveJob(q[b], None, k) for b in range(a, min(a + 50, q.shape[0]))]).result()
        found.extend(r.positions for r in res)
    for b in range(10):  # warm
        handle.remote([RetrieveJob(q[b], None, k)]).result()
    lat = []
    for b in range(latency_queries):
        t = time.perf_counter()
        handle.remote([RetrieveJob(q[b % q.shape[0]], None, k)]).result()
        lat.append((time.perf_counter() - t) * 1e3)
    rss = replica_rss(("RetrieverShard", "CandidateRetriever"))
    serve.delete(name)
    return {"shards": len(shards) or 1, "deploy_s": deploy_s, "found": found, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "replica_peak_rss": rss}  # fmt: skip


def markdown(r: dict[str, Any]) -> str:
    c, b = r["compressed"], r["build"]
    lines = [
        "# Retrieval past one machine's memory (compressed + sharded)",
        "",
        f"`{r['command']}` on {r['machine']}: {r['items']:,} synthetic clustered unit vectors, dim {r['dim']} "
        f"({r['clusters']} clusters), rows stored fp16 on disk; {r['queries']} queries, recall@{r['k']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| IVF-PQ | nlist {c['params']['nlist']}, {c['params']['m']} B codes, nprobe {c['params']['nprobe']}, "
        f"shortlist {c['shortlist']} re-scored exactly |",
        f"| RAM bytes / item (codes + ids + centroids) | **{c['bytes_per_item']:.1f}** vs {4 * r['dim']} fp32 "
        f"(**{4 * r['dim'] / c['bytes_per_item']:.1f}x** smaller) |",
        f"| index RAM | {gb(c['ram_bytes'])} GB vs {gb(4 * r['dim'] * r['items'])} GB fp32 rows |",
        f"| build: generate / train / encode {r['max_shards']} shards (Ray tasks) | {b['generate_s']:.0f} s / "
        f"{b['train_s']:.0f} s / {b['encode_shards_s']:.0f} s |",
        f"| recall@{r['k']} vs exact (in process) | **{c['recall']:.4f}** |",
        f"| queries/s compressed vs exact (same queries, threads) | {c['qps']:.1f} vs {r['exact']['qps']:.2f} "
        f"(**{c['qps'] / r['exact']['qps']:.0f}x**) |",
        f"| driver peak RSS (incl. mapped rows) / private now | {gb(r['driver_peak_rss'])} GB / "
        f"{gb(r['driver_memory']['anon'])} GB |",
        "",
        "## Over Ray Serve (single-query calls; sharded: one RetrieverShard deployment per shard + router)",
        "",
        f"| shards | recall@{r['k']} | same top-{r['k']} as 1 shard | p50 ms | p95 ms | p50 vs 1 shard "
        "| replica memory, GB: private (codes, items, heap) / peak RSS incl. mapped rows (router first) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in r["serve"]:
        base = r["serve"][0]
        rss = ", ".join(f"{gb(v['anon'])} / {gb(v['peak_rss'])}" for _, v in sorted(s["replica_peak_rss"].items()))
        lines.append(f"| {s['shards']} | {s['recall']:.4f} | {s['same_as_one']:.4f} | {s['p50_ms']:.1f} | "
                     f"{s['p95_ms']:.1f} | {s['p50_ms'] / base['p50_ms']:.2f}x | {rss} |")  # fmt: skip
    if r.get("serve_error"):
        lines += ["", f"Serve run failed: {r['serve_error']}"]
    lines += ["", "Peak RSS counts the memory-mapped row pages a process touched: they live in the shared page "
              "cache (re-scoring reads ~2,000 random rows a query, so a long run maps most of its rows); the "
              "private figure is what the process itself holds. Sharded latency adds the fan-out hop and, on "
              "2 CPUs, shards that cannot all run at once.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--shards", type=int, nargs="*", default=[2, 4])
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--rerank-factor", type=int, default=20, help="shortlist = factor x k, re-scored exactly")
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval_scale")
    args = p.parse_args(argv)

    import ray
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.artefact import load_artefact
    from shoprank.retrieval.synthetic import cluster_centres, clustered_chunk

    n, dim, k = args.items, args.dim, args.k
    s_max = max(args.shards)
    scratch = Path(tempfile.mkdtemp(dir=args.scratch, prefix="shoprank-retrieval-scale-"))
    r: dict[str, Any] = {"command": "python bench/retrieval_scale.py" + ("" if argv is None else " " + " ".join(argv)),
                         "machine": f"{os.cpu_count()} CPUs", "items": n, "dim": dim, "clusters": args.clusters,
                         "queries": args.queries, "k": k, "max_shards": s_max}  # fmt: skip
    if argv is None and len(sys.argv) > 1:
        r["command"] = "python bench/retrieval_scale.py " + " ".join(sys.argv[1:])
    try:
        init_ray(serve=True)
        from ray import serve
        from shoprank.net import free_port

        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        print(f"building {n:,} x {dim} into {scratch} ...", flush=True)
        src, r["build"] = build_sharded(scratch, n, dim, s_max, args)
        print(f"  build {r['build']}", flush=True)
        dirs = {s_max: src, 1: derive(src, scratch / "s1", [list(range(s_max))])}
        for s in args.shards:
            if s not in dirs:
                per = s_max // s
                dirs[s] = derive(src, scratch / f"s{s}", [list(range(g * per, (g + 1) * per)) for g in range(s)])
        q = clustered_chunk(cluster_centres(dim, args.clusters, args.seed), args.queries, args.seed + 1, 0)
        one = load_artefact(dirs[1])
        truth, exact_s = exact_truth(one.embeddings, q, k)
        r["exact"] = {"seconds": exact_s, "qps": args.queries / exact_s}
        print(f"  exact {r['exact']}", flush=True)
        ci = one.compressed
        t = time.perf_counter()
        found = [pos for a in range(0, q.shape[0], 100) for pos, _ in ci.search(q[a : a + 100], k)]
        comp_s = time.perf_counter() - t
        r["compressed"] = {"params": ci.params.to_dict(), "shortlist": ci.shortlist_size(k),
                           "ram_bytes": ci.ram_bytes(), "bytes_per_item": ci.ram_bytes() / n, "seconds": comp_s,
                           "qps": args.queries / comp_s,
                           "recall": recall(found, truth)}  # fmt: skip
        print(f"  compressed {r['compressed']}", flush=True)
        del one, ci
        r["serve"] = []
        if not args.skip_serve:
            for s in [1, *sorted(args.shards)]:
                try:
                    res = serve_run(dirs[s], q, k, args.latency_queries)
                except Exception as e:  # noqa: BLE001 - the in-process figures still get written
                    r["serve_error"] = f"{s} shards: {e!r}"
                    print(f"  serve failed: {r['serve_error']}", flush=True)
                    break
                got = res.pop("found")
                if s == 1:
                    base = got
                res["recall"] = recall(got, truth)
                res["same_as_one"] = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                                                    for a, b in zip(got, base, strict=True)]))  # fmt: skip
                r["serve"].append(res)
                print(f"  serve {res}", flush=True)
        r["driver_peak_rss"] = peak_rss_self()
        r["driver_memory"] = proc_memory()
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), r, mode=0o644, indent=2, default=float)
    atomic_write_text(args.out.with_suffix(".md"), markdown(r), mode=0o644)
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
