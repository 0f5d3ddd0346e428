"""Ranker latency and throughput: in-process (the Serve replica's path) vs a real Triton server.

One run measures both backends on the same inputs, at concurrency 1 and 16 (closed loop:
C callers, each sending its next request when the previous answers), and prints p50, p99,
throughput and the Triton/in-process ratios. Scores are checked to match within 1e-5 first.

    python bench/triton_vs_serve.py            # MiniLM-sized ranker (d=384), 100 candidates
    python bench/triton_vs_serve.py --quick    # fewer requests
    python bench/triton_vs_serve.py --checkpoint runs/reference/checkpoint

Writes out/bench/triton_vs_serve.json next to the printed table.

``--rerank`` measures the cross-encoder phase instead (issue 23): ``shoprank.serving.rerank.Reranker``
reranking the top N (``--top-n``, 10) of one ranked list per request, ``rerank_backend`` inprocess vs
triton, same jobs, same run; the reranked orders are checked equal first. In process, one call at a
time (a replica's lock, torch parallel inside); Triton, the C callers at once (its dynamic batcher
merges their pairs). Writes bench/results/triton_rerank.{json,md}::

    flock /tmp/shoprank-ray.lock .venv/bin/python bench/triton_vs_serve.py --rerank --cross-encoder runs/cross/model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from shoprank.model.checkpoint import load_model, model_version
from shoprank.triton.client import TritonRankerClient
from shoprank.triton.export import export_ranker
from shoprank.triton.server import TritonServer


def make_requests(n_req: int, n_cand: int, d: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_req):
        q = rng.normal(size=d).astype(np.float32)
        i = rng.normal(size=(n_cand, d)).astype(np.float32)
        q /= np.linalg.norm(q)
        i /= np.linalg.norm(i, axis=1, keepdims=True)
        out.append(
            (q, i, rng.random((n_cand, 3)).astype(np.float32), rng.uniform(-1, 1, (n_cand, 2)).astype(np.float32))
        )
    return out


def summarise(lat_s: list[float], wall_s: float) -> dict[str, float]:
    a = np.array(lat_s) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "throughput_rps": len(lat_s) / wall_s,
        "requests": len(lat_s),
    }


def bench_inprocess(model, reqs: list, concurrency: int) -> dict[str, float]:  # noqa: ANN001
    lock = threading.Lock()  # a replica scores one batch at a time; torch parallelises inside
    lat: list[float] = []

    def one(r: tuple[np.ndarray, ...]) -> None:
        t = time.perf_counter()
        with lock, torch.inference_mode():
            model.pair_outputs(*(torch.from_numpy(a) for a in r))
        lat.append(time.perf_counter() - t)

    def worker(k: int) -> None:
        for r in reqs[k::concurrency]:
            one(r)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return summarise(lat, time.perf_counter() - t0)


def bench_triton(client: TritonRankerClient, reqs: list, concurrency: int) -> dict[str, float]:
    lat: list[float] = []

    async def worker(k: int) -> None:
        for r in reqs[k::concurrency]:
            t = time.perf_counter()
            res = await client.infer_async(*r)
            assert res.source == "triton", "Triton failed over during the benchmark"
            lat.append(time.perf_counter() - t)

    async def run() -> None:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))

    t0 = time.perf_counter()
    asyncio.run(run())
    return summarise(lat, time.perf_counter() - t0)


def rerank_jobs_for(n_req: int, top_n: int, seed: int = 0) -> list:
    """One ranked list of ``top_n`` synthetic catalogue items per request, its query two words of a title."""
    from shoprank.retrieval.synthetic import synthetic_catalogue
    from shoprank.serving.stages import RankedList, RerankJob

    cat = synthetic_catalogue(2000, seed).to_dicts()
    rng = np.random.default_rng(seed)
    jobs = []
    for _ in range(n_req):
        rows = [cat[int(p)] for p in rng.choice(len(cat), top_n, replace=False)]
        words = rows[0]["title"].split()
        items = [{"item_id": r["item_id"], "title": r["title"], "category_path": r["category_path"],
                  "score": 1.0 - k / top_n, "scores": {}, "rank": k + 1} for k, r in enumerate(rows)]  # fmt: skip
        jobs.append(RerankJob(query=" ".join(words[2:4]), ranked=RankedList(items=items), top_n=top_n, k=top_n))
    return jobs


def bench_rerank(rerank, jobs: list, concurrency: int, serial: bool) -> dict[str, float]:  # noqa: ANN001
    lock = threading.Lock()
    lat: list[float] = []

    def worker(k: int) -> None:
        for job in jobs[k::concurrency]:
            t = time.perf_counter()
            if serial:
                with lock:
                    rerank([job])
            else:
                rerank([job])
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return summarise(lat, time.perf_counter() - t0)


def main_rerank(args: argparse.Namespace) -> int:
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.model.cross_encoder import CrossEncoder, CrossEncoderConfig, load_cross_encoder, save_cross_encoder
    from shoprank.serving.rerank import Reranker
    from shoprank.triton.export import export_cross_encoder

    n_req = args.requests or (48 if args.quick else 160)
    load_before = os.getloadavg()[0]
    jobs, warm = rerank_jobs_for(n_req, args.top_n), rerank_jobs_for(8, args.top_n, seed=1)
    with tempfile.TemporaryDirectory(prefix="shoprank-bench-rerank-") as tmp:
        cross_dir = args.cross_encoder
        if not cross_dir:  # pretrained MiniLM, untrained heads: the same work as a trained one
            cross_dir = str(save_cross_encoder(CrossEncoder(CrossEncoderConfig(max_length=48)), Path(tmp) / "cross"))
        model, manifest = load_cross_encoder(cross_dir)
        export_cross_encoder(model, Path(tmp) / "repo", manifest=manifest, instances=args.instances)
        threads = {"OPENBLAS_NUM_THREADS": str(args.triton_threads)} if args.triton_threads else None
        server = TritonServer(Path(tmp) / "repo", log_file=Path(tmp) / "triton.log", model_name="shoprank_cross",
                              extra_env=threads)  # fmt: skip
        server.start()
        try:
            local = Reranker.load(cross_dir)
            remote = Reranker.load(
                cross_dir, backend="triton", backend_options={"url": server.grpc_url, "timeout_s": 30.0, "retries": 0}
            )
            max_diff, same_order = 0.0, True
            for a, b in zip(local(warm), remote(warm), strict=True):  # correctness first: equal work below
                same_order &= [it["item_id"] for it in a.items] == [it["item_id"] for it in b.items]
                for x, y in zip(a.items, b.items, strict=True):
                    max_diff = max(max_diff, abs(x["scores"]["cross_relevance"] - y["scores"]["cross_relevance"]))
            results = {}
            for c in (1, 16):
                results[f"inprocess_c{c}"] = bench_rerank(local, jobs, c, serial=True)
                results[f"triton_c{c}"] = bench_rerank(remote, jobs, c, serial=False)
        finally:
            server.stop()
    version = local.version
    load = (round(load_before, 1), round(os.getloadavg()[0], 1))  # 1-min load average: a busy machine shows here
    ratios = {f"c{c}": {
        "p50_triton_over_inprocess": results[f"triton_c{c}"]["p50_ms"] / results[f"inprocess_c{c}"]["p50_ms"],
        "throughput_triton_over_inprocess": results[f"triton_c{c}"]["throughput_rps"]
        / results[f"inprocess_c{c}"]["throughput_rps"]} for c in (1, 16)}  # fmt: skip
    head = (f"cross-encoder {version} (max_length {model.config.max_length}), top {args.top_n} pairs per request, "
            f"{n_req} requests per setting, {os.cpu_count()} CPUs (load {load[0]} -> {load[1]}), "
            f"Triton instances={args.instances}, BLAS threads {args.triton_threads or 'default'}; "
            f"max |triton - inprocess| relevance = {max_diff:.1e}, same reranked order: {same_order}")  # fmt: skip
    lines = [head, "", "| backend | concurrency | p50 ms | p99 ms | req/s |", "| --- | --- | --- | --- | --- |"]
    for c in (1, 16):
        for b in ("inprocess", "triton"):
            r = results[f"{b}_c{c}"]
            lines.append(f"| {b} | {c} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_rps']:.1f} |")
    lines.append("")
    for c in (1, 16):
        q = ratios[f"c{c}"]
        lines.append(f"- concurrency {c}: Triton/in-process p50 x{q['p50_triton_over_inprocess']:.2f}, "
                     f"throughput x{q['throughput_triton_over_inprocess']:.2f}")  # fmt: skip
    command = "flock /tmp/shoprank-ray.lock .venv/bin/python bench/triton_vs_serve.py --rerank" + (
        f" --cross-encoder {args.cross_encoder}" if args.cross_encoder else "") + (
        f" --triton-threads {args.triton_threads}" if args.triton_threads else "")  # fmt: skip
    lines += ["", f"Command: `{command}`"]
    print("\n".join(lines))
    out = Path(args.rerank_out)
    atomic_write_json(out.with_suffix(".json"), {
        "cross_encoder_version": version, "top_n": args.top_n, "requests": n_req, "cpus": os.cpu_count(),
        "triton_instances": args.instances, "max_abs_diff_relevance": max_diff, "same_order": same_order,
        "results": results, "ratios": ratios, "command": command, "load_average": load,
        "triton_blas_threads": args.triton_threads}, indent=2)  # fmt: skip
    title = "# Cross-encoder phase: in process vs Triton\n\n"
    atomic_write_text(out.with_suffix(".md"), title + "\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md")
    return 0 if same_order else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--checkpoint", help="shoprank checkpoint (default: pretrained MiniLM, untrained heads)")
    ap.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"])
    ap.add_argument("--candidates", type=int, default=100, help="items scored per request")
    ap.add_argument("--requests", type=int, default=None, help="requests per setting (default 400, quick 64)")
    ap.add_argument("--instances", type=int, default=1, help="Triton model instances")
    ap.add_argument("--out", default="out/bench/triton_vs_serve.json")
    ap.add_argument("--rerank", action="store_true", help="the cross-encoder phase instead of the ranker")
    ap.add_argument("--cross-encoder", help="with --rerank: a train-cross OUT/model (default: MiniLM, untrained heads)")
    ap.add_argument("--top-n", type=int, default=10, help="with --rerank: pairs reranked per request")
    ap.add_argument("--rerank-out", default="bench/results/triton_rerank.json")
    ap.add_argument("--triton-threads", type=int, default=0, help="with --rerank: Triton's BLAS threads (0: default)")
    args = ap.parse_args(argv)
    if args.rerank:
        return main_rerank(args)
    n_req = args.requests or (64 if args.quick else 400)

    model, manifest = load_model(args.checkpoint, encoder=args.encoder)
    version = model_version(manifest)
    d = model.encoder.dim
    reqs = make_requests(n_req, args.candidates, d)
    warm = make_requests(8, args.candidates, d, seed=1)

    with tempfile.TemporaryDirectory(prefix="shoprank-bench-triton-") as tmp:
        export_ranker(model, Path(tmp) / "repo", manifest=manifest, instances=args.instances)
        server = TritonServer(Path(tmp) / "repo", log_file=Path(tmp) / "triton.log").start()
        try:
            client = TritonRankerClient(server.grpc_url, expected_version=version, timeout_s=10.0, retries=0)
            # correctness first: the numbers below compare equal work
            max_diff = 0.0
            for r in warm:
                got = client.pair_outputs(*r)
                with torch.inference_mode():
                    ref = model.pair_outputs(*(torch.from_numpy(a) for a in r))
                max_diff = max(max_diff, max(float(np.abs(got[t] - ref[t].numpy()).max()) for t in ref))
            for r in warm:  # warm-up both paths
                bench_inprocess(model, [r], 1)
                bench_triton(client, [r], 1)
            results = {}
            for c in (1, 16):
                results[f"inprocess_c{c}"] = bench_inprocess(model, reqs, c)
                results[f"triton_c{c}"] = bench_triton(client, reqs, c)
            client.close()
        finally:
            server.stop()

    print(
        f"ranker: {version}, d={d}, {args.candidates} candidates/request, {n_req} requests per setting, "
        f"{os.cpu_count()} CPUs, Triton instances={args.instances}; max |triton - inprocess| = {max_diff:.2e}"
    )
    print(f"{'backend':<12}{'conc':>5}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for c in (1, 16):
        for b in ("inprocess", "triton"):
            r = results[f"{b}_c{c}"]
            print(f"{b:<12}{c:>5}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['throughput_rps']:>10.1f}")
    ratios = {}
    for c in (1, 16):
        ip, tr = results[f"inprocess_c{c}"], results[f"triton_c{c}"]
        ratios[f"c{c}"] = {
            "p50_triton_over_inprocess": tr["p50_ms"] / ip["p50_ms"],
            "p99_triton_over_inprocess": tr["p99_ms"] / ip["p99_ms"],
            "throughput_triton_over_inprocess": tr["throughput_rps"] / ip["throughput_rps"],
        }
        print(
            f"concurrency {c:>2}: Triton/in-process p50 x{ratios[f'c{c}']['p50_triton_over_inprocess']:.2f}, "
            f"p99 x{ratios[f'c{c}']['p99_triton_over_inprocess']:.2f}, "
            f"throughput x{ratios[f'c{c}']['throughput_triton_over_inprocess']:.2f}"
        )
    for b in ("inprocess", "triton"):
        gain = results[f"{b}_c16"]["throughput_rps"] / results[f"{b}_c1"]["throughput_rps"]
        print(f"{b}: throughput at concurrency 16 over 1: x{gain:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "model_version": version,
                "dim": d,
                "candidates": args.candidates,
                "requests": n_req,
                "cpus": os.cpu_count(),
                "triton_instances": args.instances,
                "max_abs_diff": max_diff,
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
