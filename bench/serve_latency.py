"""Served search vs the same pipeline in-process, batching gain, and ANN recall/speed-up.

    python bench/serve_latency.py            # catalogues of 10k and 100k items, ANN on 1M vectors
    python bench/serve_latency.py --quick    # 10k items, fewer requests, ANN on 200k vectors
    python bench/serve_latency.py --quick --runtimes-only   # the encoder runtimes section alone
    python bench/serve_latency.py --quick --phases-only     # vector vs hybrid vs + cross-encoder phase

For each catalogue size, with the real all-MiniLM-L6-v2 encoder (pretrained, no checkpoint):

1. p50/p99 latency of Search over gRPC (Ray Serve, local) against SearchPipeline.handle() called
   in this process on the same requests, at concurrency 1 and 16 -> served/in-process ratios;
2. throughput of the served path at concurrency 16 over concurrency 1 -> the batching gain;

then Serve's floor: a no-op app of the graph's shape, and the same shape with the pipeline's c1
CPU work in its deployments against that work in-process -> the lowest c1 ratio this machine
allows the graph (``--floor-only`` runs just this); then ANN recall@100 of the HNSW index
against exact search on synthetic unit vectors of dim 384 (clustered, like real embeddings; the
output says so), with the per-query speed-up.

Encoder runtimes (issue 18; ``--runtimes``, or ``--runtimes-only``): c1 and c16 p50 of served Search
and of the in-process pipeline with the query encoder on torch fp32, then on ONNX int8
(``serving.encoder_runtime``), same index and requests, in this run -> int8/torch p50 ratios.

Retrieval and ranking phases (issue 23; ``--phases``, or ``--phases-only``): the same c1/c16 p50s with
vector-only retrieval, hybrid (BM25 + ANN) retrieval, and hybrid plus the cross-encoder phase over the top
``--rerank-n`` (the model in ``--cross-encoder``, default runs/cross/model; skipped when absent) -> each
p50 over the vector-only path's in this run.

Targets (issue 4): served p50 <= 1.5x in-process, served p99 <= 3x served p50, batching >= 3x,
recall@100 >= 0.98. Every ratio comes from this one run; results also go to --out as JSON.

The module is over 500 lines because it holds the served graph's five measurements (latency, Serve's
floor, ANN, encoder runtimes, phases), which share its request set, index builder and load generator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# As on the replicas (deployments/app.py): idle OpenMP threads sleep rather than spin, so the
# in-process pipeline and the Serve replicas on the same cores do not slow each other down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from shoprank.serving.loadgen import pct, run_load  # noqa: E402 - after the environment above

QUERY_WORDS = [
    "winter boots", "waterproof jacket", "summer dress", "frying pan", "garden hose", "bluetooth speaker",
    "kids toys", "running shoes", "wool coat", "red sandals", "coffee maker", "lawn mower", "swim shorts",
    "headphones noise cancelling", "dutch oven", "hiking boots", "rain coat", "beach towel", "desk lamp",
    "ankle boots black", "cheap earbuds", "snow sled", "kitchen knife", "yoga mat",
]  # fmt: skip


def make_requests(n: int, pb2) -> list:
    rng = np.random.default_rng(0)
    reqs = []
    for i in range(n):
        text = QUERY_WORDS[i % len(QUERY_WORDS)]
        if i % 3 == 0:
            text += f" {['blue', 'large', 'sale', 'new', 'premium'][int(rng.integers(5))]}"
        kw = {"query": text, "k": 10, "context": pb2.Context(month=int(rng.integers(1, 13)))}
        if i % 4 == 0:
            kw["filters"] = pb2.Filters(in_stock=True)
        reqs.append(pb2.SearchRequest(**kw))
    return reqs


def build_catalogue_index(n: int, out: Path, cache: Path, embed_max: int | None) -> tuple[Path, str]:
    """Synthetic catalogue of n items; item vectors from the real MiniLM (cached on disk).

    With ``embed_max`` below n, only that many item texts are embedded; every other item gets
    the vector of an embedded item plus small Gaussian noise (renormalised). The returned note
    says which, so the output never passes such vectors off as embedded titles.
    """
    from shoprank.model.checkpoint import load_model
    from shoprank.model.text import item_text
    from shoprank.retrieval.artefact import read_index_manifest, write_artefact
    from shoprank.retrieval.synthetic import catalogue

    m = min(n, embed_max or n)
    note = f"all {n:,} item texts embedded with MiniLM"
    if m < n:
        note = f"{m:,} item texts embedded with MiniLM; the other {n - m:,} items reuse those vectors + noise"
    index = out / f"index_{n}_{m}"
    try:
        m_ = read_index_manifest(index)
        if m_["num_items"] == n and m_.get("lexical"):
            return index, note
    except Exception:  # noqa: BLE001 - build it
        pass
    cat = catalogue(n, seed=0)
    cache.mkdir(parents=True, exist_ok=True)
    emb_file = cache / f"minilm_{n}_{m}.npy"  # the first m texts of the n-item catalogue
    if emb_file.is_file():
        emb = np.load(emb_file, allow_pickle=False)
    else:
        model, _ = load_model(None, encoder="minilm")
        texts = [
            item_text(t, d, c) for t, d, c in cat.head(m).select("title", "description", "category_path").iter_rows()
        ]
        t0 = time.perf_counter()
        emb = model.embed(texts, batch_size=128)
        print(f"  embedded {m:,} item texts with MiniLM in {time.perf_counter() - t0:.0f}s", flush=True)
        np.save(emb_file, emb, allow_pickle=False)
    if m < n:
        rng = np.random.default_rng(1)
        extra = emb[rng.integers(0, m, n - m)] + 0.05 * rng.normal(size=(n - m, emb.shape[1])).astype(np.float32)
        extra /= np.linalg.norm(extra, axis=1, keepdims=True)
        emb = np.concatenate([emb, extra.astype(np.float32)])
    write_artefact(index, cat, emb, model_version="pretrained-minilm", encoder="minilm", lexical=True)
    return index, note


def bench_catalogue(n: int, args, out: Path) -> dict:
    from shoprank.net import free_port
    from shoprank.serve_app import server
    from shoprank.serving.client import SearchClient
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import SearchPipeline
    from shoprank.serving.protos import pb2

    print(f"\n== catalogue of {n:,} items ==", flush=True)
    index, note = build_catalogue_index(n, out, out / "cache", args.embed_max)
    print(f"  item vectors: {note}", flush=True)
    serving = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0}
    reqs = make_requests(args.requests, pb2)
    warm = make_requests(16, pb2)

    # Both paths are up at once and measured in alternating rounds on the same requests, so a
    # change in background load hits both sides of every ratio alike.
    pipe = SearchPipeline(index, encoder="minilm", config=ServingConfig(**serving))
    port = free_port()
    server.start_serve(port)
    server.deploy({"index_dir": str(index), "encoder": "minilm", "serving": serving,
                   "torch_threads": args.torch_threads, "ingress_max_ongoing_requests": 64,
                   "ingress_max_queued_requests": 256})  # fmt: skip
    client = SearchClient(f"localhost:{port}", timeout=120)

    def in_process(r):
        return pipe.handle(r, pb2)

    def served_call(r):
        return client.stub.Search(r, metadata=client.metadata, timeout=120)

    run_load(in_process, warm, 1)
    run_load(served_call, warm, 4)
    res: dict = {"items": n, "index_kind": pipe.retriever.index.kind, "item_vectors": note}
    from ray import serve

    app = server.DEFAULT_APPLICATION
    res["devices"] = {
        "in_process": str(pipe.encoder.model.device),
        "served_intent": serve.get_deployment_handle("QueryIntent", app).batch_stats.remote().result()["device"],
        "served_ranker": serve.get_deployment_handle("MultiTaskRanker", app).info.remote().result()["device"],
    }
    print(f"  models on: {res['devices']}", flush=True)
    inproc, served, batch_sizes = {}, {}, {}
    rounds = max(1, args.rounds)
    chunks = [reqs[i::rounds] for i in range(rounds)]
    for c in (1, 16):
        lat = {"in": [], "sv": []}
        wall = {"in": 0.0, "sv": 0.0}
        sizes: list[int] = []
        stages: dict[str, list[float]] = {}
        for chunk in chunks:
            for key, fn in (("in", in_process), ("sv", served_call)):
                la, w, outs = run_load(fn, chunk, c)
                lat[key] += la
                wall[key] += w
                if key == "sv":
                    sizes += [o.batch_size for o in outs]
                    for o in outs:
                        for stage, ms in o.timings_ms.items():
                            stages.setdefault(stage, []).append(ms)
                    served_top = [o.items[0].item_id for o in outs]
                else:
                    inproc_top = [o.items[0].item_id for o in outs]
        inproc[c] = {"p50": pct(lat["in"], 50), "p99": pct(lat["in"], 99), "qps": len(reqs) / wall["in"]}
        served[c] = {"p50": pct(lat["sv"], 50), "p99": pct(lat["sv"], 99), "qps": len(reqs) / wall["sv"]}
        batch_sizes[c] = float(np.mean(sizes))
        served[c]["stages_p50"] = {k: pct(v, 50) for k, v in sorted(stages.items())}
        print(f"  concurrency {c}: done", flush=True)
    client.close()
    serve.shutdown()
    pipe = None
    same = float(np.mean([a == b for a, b in zip(inproc_top, served_top, strict=True)]))
    res.update(inprocess=inproc, served=served, mean_ranker_batch=batch_sizes, same_top1=same)
    print(f"  {'':>14} {'p50 ms':>9} {'p99 ms':>9} {'qps':>8}")
    for c in (1, 16):
        for name, d in (("in-process", inproc[c]), ("served gRPC", served[c])):
            print(f"  c{c:<2} {name:<11} {d['p50']:>9.1f} {d['p99']:>9.1f} {d['qps']:>8.1f}")
    for c in (1, 16):
        r50 = served[c]["p50"] / inproc[c]["p50"]
        tail = served[c]["p99"] / served[c]["p50"]
        res[f"c{c}_served_over_inprocess_p50"] = r50
        res[f"c{c}_served_p99_over_p50"] = tail
        print(f"  c{c}: served p50 / in-process p50 = {r50:.2f}x (target <= 1.5x); "
              f"served p99 / p50 = {tail:.2f}x (target <= 3x)")  # fmt: skip
    st = served[1]["stages_p50"]
    hops = {
        name: st[name] - st[work]
        for name, work in (("intent", "intent_encode"), ("retrieve", "retrieve_search"), ("rank", "rank_forward"))
    }
    hops["client_and_proxy"] = served[1]["p50"] - st["total"]
    res["c1_hop_ms"] = hops
    print(
        f"  c1 served, median ms per stage: intent {st['intent']:.1f} (encoding {st['intent_encode']:.1f}), "
        f"retrieve {st['retrieve']:.1f} (search {st['retrieve_search']:.1f}), rank {st['rank']:.1f} "
        f"(forward {st['rank_forward']:.1f}), ingress total {st['total']:.1f}"
    )
    print(
        "  c1 Serve's share (hop minus the work inside it): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in hops.items())
        + f"; sum {sum(hops.values()):.1f} ms"
    )
    gain = served[16]["qps"] / served[1]["qps"]
    res["batching_gain"] = gain
    print(f"  batching: served throughput c16 / c1 = {gain:.2f}x (target >= 3x); mean ranker batch "
          f"c1 {batch_sizes[1]:.1f}, c16 {batch_sizes[16]:.1f}")  # fmt: skip
    print(f"  same top-1 item in-process vs served: {same:.0%}")
    return res


def bench_runtimes(n: int, args, out: Path, runtimes: tuple[str, ...] = ("torch", "onnx-int8")) -> dict:
    """c1/c16 p50, served and in-process, with the query encoder on each runtime (the ONNX files are
    exported before any timing)."""
    from shoprank.model.checkpoint import load_model

    for runtime in runtimes:
        load_model(None, encoder="minilm", encoder_runtime=runtime)  # export (once) before anything is timed
    return bench_variants(n, args, out, {r: {"encoder_runtime": r} for r in runtimes}, "encoder runtimes")


def bench_phases(n: int, args, out: Path) -> dict:
    """c1/c16 p50, served and in-process: vector-only retrieval, hybrid retrieval, hybrid + the cross-encoder
    phase over the top ``args.rerank_n`` (when ``args.cross_encoder`` holds a model)."""
    variants: dict[str, dict] = {"vector": {"retrieval": "vector"}, "hybrid": {"retrieval": "hybrid"}}
    if (args.cross_encoder / "manifest.json").is_file():
        variants[f"hybrid + cross-encoder N={args.rerank_n}"] = {
            "retrieval": "hybrid", "rerank_top_n": args.rerank_n, "cross_encoder_dir": str(args.cross_encoder)
        }  # fmt: skip
    else:
        print(f"  no cross-encoder in {args.cross_encoder}: the cross-encoder row is skipped", flush=True)
    return bench_variants(n, args, out, variants, "retrieval and ranking phases")


def bench_variants(n: int, args, out: Path, variants: dict[str, dict], title: str) -> dict:
    """c1/c16 p50, served and in-process, for each named set of serving settings (one app at a time, same
    index and requests); every variant's p50s over the first variant's."""
    from ray import serve
    from shoprank.serve_app import server
    from shoprank.serving.client import SearchClient
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import SearchPipeline
    from shoprank.serving.protos import pb2

    print(f"\n== {title}: {' vs '.join(variants)}; catalogue of {n:,} items ==", flush=True)
    index, note = build_catalogue_index(n, out, out / "cache", args.embed_max)
    reqs, warm = make_requests(args.requests, pb2), make_requests(16, pb2)
    res: dict = {"title": title, "items": n, "item_vectors": note, "by_variant": {}}
    for name, overrides in variants.items():
        serving = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, **overrides}
        pipe = SearchPipeline(index, encoder="minilm", config=ServingConfig(**serving))
        port = server.start_serve()
        server.deploy({"index_dir": str(index), "encoder": "minilm", "serving": serving,
                       "torch_threads": args.torch_threads, "ingress_max_ongoing_requests": 64,
                       "ingress_max_queued_requests": 256})  # fmt: skip
        client = SearchClient(f"localhost:{port}", timeout=120)
        stats = serve.get_deployment_handle("QueryIntent", server.DEFAULT_APPLICATION).batch_stats.remote().result()

        def in_process(r, pipe=pipe):
            return pipe.handle(r, pb2)

        def served_call(r, client=client):
            return client.stub.Search(r, metadata=client.metadata, timeout=120)

        run_load(in_process, warm, 1)
        run_load(served_call, warm, 4)
        row: dict = {"settings": overrides, "in_process_runtime": pipe.encoder.model.encoder_runtime,
                     "served_runtime": stats.get("encoder_runtime", "torch")}  # fmt: skip
        for c in (1, 16):
            lat_in, lat_sv, outs = [], [], []
            for chunk in [reqs[i :: args.rounds] for i in range(args.rounds)]:
                lat_in += run_load(in_process, chunk, c)[0]
                la, _, o = run_load(served_call, chunk, c)
                lat_sv, outs = lat_sv + la, outs + o
            row[f"c{c}"] = {"in_process_p50": pct(lat_in, 50), "served_p50": pct(lat_sv, 50),
                            "served_p99": pct(lat_sv, 99)}  # fmt: skip
            stages: dict[str, list[float]] = {}
            for o in outs:
                for stage, ms in o.timings_ms.items():
                    stages.setdefault(stage, []).append(ms)
            row[f"c{c}"]["served_stages_p50"] = {k: pct(v, 50) for k, v in sorted(stages.items())}
            m = row[f"c{c}"]
            print(f"  {name:<10} c{c:<2}: in-process p50 {m['in_process_p50']:.1f} ms, served p50 "
                  f"{m['served_p50']:.1f} ms (p99 {m['served_p99']:.1f})", flush=True)  # fmt: skip
        res["by_variant"][name] = row
        client.close()
        serve.shutdown()
        pipe = None
    names = list(variants)
    base = res["by_variant"][names[0]]
    for name in names[1:]:
        for c in (1, 16):
            for side in ("in_process_p50", "served_p50"):
                ratio = res["by_variant"][name][f"c{c}"][side] / base[f"c{c}"][side]
                res[f"c{c}_{side}_{name}_over_{names[0]}"] = ratio
                print(f"  c{c} {side.replace('_p50', '')} p50 {name} / {names[0]} = {ratio:.2f}x", flush=True)
    return res


def write_variants_md(res: dict, args, path: Path, flag: str, issue: str) -> None:
    """A variants section (encoder runtimes, phases) as markdown (atomically)."""
    from shoprank.files import atomic_write_text

    names = list(res["by_variant"])
    rows = []
    for name, row in res["by_variant"].items():
        for c in (1, 16):
            m = row[f"c{c}"]
            rows.append(f"| {name} (served encoder: {row['served_runtime']}) | c{c} | {m['in_process_p50']:.1f} | "
                        f"{m['served_p50']:.1f} | {m['served_p99']:.1f} |")  # fmt: skip
    ratios = "\n".join(f"- {k}: **{v:.2f}×**" for k, v in res.items() if k.endswith(f"_over_{names[0]}"))
    text = f"""# bench/serve_latency.py {flag} — {res["title"]}: {" vs ".join(names)} ({issue})

`python bench/serve_latency.py {"--quick " if args.quick else ""}{flag}` — {res["items"]:,} items
({res["item_vectors"]}), {args.requests} requests per concurrency in {args.rounds} rounds, pretrained
all-MiniLM-L6-v2, {os.cpu_count()} CPUs. Every row measured in this one run (one app at a time, same index and
requests). Settings per row: {json.dumps({n: r["settings"] for n, r in res["by_variant"].items()})}.

| variant | concurrency | in-process p50 ms | served p50 ms | served p99 ms |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{ratios}
"""
    atomic_write_text(path, text)


def floor_work_ms(catalogues: list[dict] | None) -> tuple[float, float, float]:
    """The first catalogue's c1 medians of encoding, search and forward (16, 2, 4 ms without one)."""
    if not catalogues:
        return (16.0, 2.0, 4.0)
    st = catalogues[0]["served"][1]["stages_p50"]
    return (st["intent_encode"], st["retrieve_search"], st["rank_forward"])


def busy(ms: float) -> None:
    """CPU-bound work for ``ms`` milliseconds (small matrix products, as a forward pass is)."""
    t0 = time.perf_counter()
    a = np.full((64, 64), 1e-3)
    while (time.perf_counter() - t0) * 1e3 < ms:
        a = a @ a


def bench_hop_floor(requests: int = 200, work_ms: tuple[float, float, float] = (16.0, 2.0, 4.0)) -> dict:
    """Serve's own cost on this machine: a no-op app of the same shape as the search graph (an
    ingress calling three other deployments in turn), called through a handle from this process.
    Its p50 is the latency every served request pays before any model work; compare it with the
    served minus in-process p50 above. Side by side: the same three calls chained (each
    DeploymentResponse passed on to the next deployment instead of awaited in the ingress), and
    the graph with ``work_ms`` of CPU work in the three deployments (by default the c1 encode,
    search and forward times of the search graph), each a ``@serve.batch`` method as in the real
    ones, against the same work done in this process: the best c1 ratio this machine allows
    a graph of this shape, with no model, payload, proxy or gRPC client."""
    from ray import serve

    @serve.deployment(name="NoOp", ray_actor_options={"num_cpus": 0.1})
    class NoOp:
        def __init__(self, work_ms: float = 0.0) -> None:
            self.work_ms = work_ms

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
        async def work(self, xs: list[int]) -> list[int]:
            busy(self.work_ms)
            return xs

        async def __call__(self, x: int) -> int:
            return await self.work(x) if self.work_ms else x

    @serve.deployment(name="NoOpIngress", ray_actor_options={"num_cpus": 0.1})
    class NoOpIngress:
        def __init__(self, a, b, c) -> None:
            self.hops = (a, b, c)

        async def awaited(self, x: int) -> int:
            for h in self.hops:
                x = await h.remote(x)
            return x

        async def chained(self, x: int) -> int:
            r = x
            for h in self.hops:
                r = h.remote(r)
            return await r

    handle = serve.run(NoOpIngress.bind(NoOp.bind(), NoOp.bind(), NoOp.bind()), name="hop-floor", route_prefix=None)
    worked = serve.run(NoOpIngress.bind(*(NoOp.bind(w) for w in work_ms)), name="hop-work", route_prefix=None)

    def in_process(_: int) -> None:
        for w in work_ms:
            busy(w)

    calls = {"awaited": lambda i: handle.awaited.remote(i).result(),
             "chained": lambda i: handle.chained.remote(i).result(),
             "work served": lambda i: worked.awaited.remote(i).result(),
             "work in-process": in_process}  # fmt: skip
    lat: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(4):  # alternating rounds, so background load hits every mode alike
        for mode, run in calls.items():
            for i in range(10):
                run(i)
            for i in range(requests // 4):
                t0 = time.perf_counter()
                run(i)
                lat[mode].append((time.perf_counter() - t0) * 1e3)
    serve.delete("hop-floor")
    serve.delete("hop-work")
    res = {"p50_ms": pct(lat["awaited"], 50), "p99_ms": pct(lat["awaited"], 99),
           "chained_p50_ms": pct(lat["chained"], 50), "work_ms": list(work_ms),
           "work_served_p50_ms": pct(lat["work served"], 50),
           "work_inprocess_p50_ms": pct(lat["work in-process"], 50)}  # fmt: skip
    res["chained_over_awaited_p50"] = res["chained_p50_ms"] / res["p50_ms"]
    res["work_served_over_inprocess_p50"] = res["work_served_p50_ms"] / res["work_inprocess_p50_ms"]
    print(f"\n== Serve floor: no-op ingress + 3 deployments, same shape as the search graph ==\n"
          f"  p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms a request (no model, no gRPC proxy)\n"
          f"  chained instead of awaited in turn: p50 {res['chained_p50_ms']:.1f} ms "
          f"({res['chained_over_awaited_p50']:.2f}x)\n"
          f"  with {' + '.join(f'{w:.1f}' for w in work_ms)} ms of CPU work in the three deployments: served "
          f"p50 {res['work_served_p50_ms']:.1f} ms vs the same work in-process {res['work_inprocess_p50_ms']:.1f} ms "
          f"= {res['work_served_over_inprocess_p50']:.2f}x (the c1 ratio's floor on this machine)")  # fmt: skip
    return res


def bench_ann(n: int, args) -> dict:
    from shoprank.retrieval.index import build_hnsw, exact_topk

    d, k, n_q = 384, 100, args.ann_queries
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(n // 500, 16), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centres[rng.integers(0, len(centres), n_q)] + 0.5 * rng.normal(size=(n_q, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    print(f"\n== ANN on {n:,} synthetic unit vectors, dim {d} (clustered Gaussian, not embedded titles) ==",
          flush=True)  # fmt: skip
    t0 = time.perf_counter()
    index = build_hnsw(x, m=args.hnsw_m, ef_construction=args.hnsw_ef_construction)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = np.concatenate([exact_topk(q[i : i + 8], x, k)[0] for i in range(0, n_q, 8)])
    exact_ms = (time.perf_counter() - t0) * 1e3 / n_q
    out = {"items": n, "dim": d, "build_s": build_s, "exact_ms_per_query": exact_ms, "by_ef": {}}
    print(f"  HNSW build (M={args.hnsw_m}, ef_construction={args.hnsw_ef_construction}): {build_s:.0f}s; "
          f"exact search {exact_ms:.1f} ms/query")  # fmt: skip
    for ef in args.ef:
        index.set_ef(ef)
        t0 = time.perf_counter()
        labels = np.concatenate([index.knn_query(q[i : i + 1], k=k, num_threads=1)[0] for i in range(n_q)])
        ann_ms = (time.perf_counter() - t0) * 1e3 / n_q
        recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(labels, exact, strict=True)]))
        out["by_ef"][ef] = {"recall_at_100": recall, "ms_per_query": ann_ms, "speedup": exact_ms / ann_ms}
        print(f"  ef={ef:<4} recall@100 {recall:.4f} (target >= 0.98)  {ann_ms:.2f} ms/query  "
              f"speed-up {exact_ms / ann_ms:.1f}x over exact")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10k items, fewer requests, ANN on 200k vectors")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--requests", type=int, default=None)
    p.add_argument("--ann-items", type=int, default=None)
    p.add_argument("--ann-queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=4, help="alternating in-process/served rounds per concurrency")
    p.add_argument("--ef", type=int, nargs="*", default=[128, 256, 512])
    p.add_argument("--hnsw-m", type=int, default=None, help="HNSW M (default 32; --quick 16)")
    p.add_argument("--hnsw-ef-construction", type=int, default=None, help="default 200; --quick 100")
    p.add_argument("--embed-max", type=int, default=None,
                   help="embed at most this many item texts (default: all; --quick: 2000)")  # fmt: skip
    p.add_argument("--torch-threads", type=int, default=None, help="torch threads per model replica")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray")
    p.add_argument("--skip-serving", action="store_true")
    p.add_argument("--floor-only", action="store_true", help="only Serve's floor (no catalogue, no ANN)")
    p.add_argument("--skip-ann", action="store_true")
    p.add_argument("--runtimes", action="store_true", help="also: c1/c16 p50 with the int8 encoder vs torch")
    p.add_argument("--runtimes-only", action="store_true", help="only the encoder runtimes section")
    p.add_argument("--phases", action="store_true", help="also: vector vs hybrid retrieval vs + cross-encoder")
    p.add_argument("--phases-only", action="store_true", help="only the phases section")
    p.add_argument("--cross-encoder", type=Path, default=REPO / "runs" / "cross" / "model",
                   help="the cross-encoder of the phases section (shoprank train-cross OUT/model)")  # fmt: skip
    p.add_argument("--rerank-n", type=int, default=10, help="the cross-encoder phase's N in the phases section")
    p.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "serve_latency")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.requests = args.requests or (96 if args.quick else 320)
    args.hnsw_m = args.hnsw_m or (16 if args.quick else 32)
    args.hnsw_ef_construction = args.hnsw_ef_construction or (100 if args.quick else 200)
    args.embed_max = args.embed_max or (2000 if args.quick else None)
    args.ann_items = args.ann_items or (200_000 if args.quick else 1_000_000)
    args.out.mkdir(parents=True, exist_ok=True)
    only = args.runtimes_only or args.phases_only

    import torch

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; encoder all-MiniLM-L6-v2 (pretrained)")  # fmt: skip
    results: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if not args.skip_serving:
        from shoprank.hashing import allow_default_salt
        from shoprank.net import free_port
        from shoprank.ray_runtime import init_ray
        from shoprank.serve_app import server

        allow_default_salt("bench/serve_latency.py")  # unless a salt is set: hashes only agree within this run
        init_ray(num_cpus=args.num_cpus, serve=True)
        try:
            if args.runtimes or args.runtimes_only:
                results["encoder_runtimes"] = bench_runtimes(args.sizes[0], args, args.out)
            if args.phases or args.phases_only:
                results["phases"] = bench_phases(args.sizes[0], args, args.out)
            if not args.floor_only and not only:
                results["catalogues"] = [bench_catalogue(n, args, args.out) for n in args.sizes]
            if not only:
                server.start_serve(free_port())
                results["serve_hop_floor"] = bench_hop_floor(work_ms=floor_work_ms(results.get("catalogues")))
        finally:
            server.shutdown()
    if not args.skip_ann and not args.floor_only and not only:
        results["ann"] = bench_ann(args.ann_items, args)
    results_dir = REPO / "bench" / "results"
    if "encoder_runtimes" in results:
        write_variants_md(results["encoder_runtimes"], args, results_dir / "serve_latency_runtime.md",
                          "--runtimes-only", "issue 18")  # fmt: skip
    if "phases" in results:
        write_variants_md(results["phases"], args, results_dir / "serve_latency_phases.md", "--phases-only", "issue 23")
    path = args.out / "results.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
