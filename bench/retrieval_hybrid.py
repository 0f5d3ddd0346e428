"""Hybrid retrieval (BM25 + ANN, reciprocal-rank fusion) vs vector-only vs lexical-only: recall of retrieval alone.

    flock /tmp/shoprank-ray.lock .venv/bin/python bench/retrieval_hybrid.py              # ~6.5 min on 2 cores
    flock /tmp/shoprank-ray.lock .venv/bin/python bench/retrieval_hybrid.py --max-items 20000  # ~2 min

One run, side by side, on every judged and click source of ``../shared/data`` that has items to retrieve:

- **Home Depot** (relevance.csv): the catalogue of judged products (titles; the file has no descriptions),
  all 45,958 (``--max-items N``: every product judged for the chosen queries plus a seeded random sample);
  queries of the *unseen-query test split* the eval uses (``hash_split`` of the normalised query with the
  reference checkpoint's split config and data seed); relevant = judged relevance >= ``--relevant``
  (2.5 on the 1-3 scale: the retrieval task's positives, ``lo + 0.75 * span``);
- **Best Buy** (clicks.csv + products.xml.zip): the product catalogue (title, brand, category path, short
  description, attribute words); the *time split's test period* of the click log (the eval's
  ``click_log_split``); relevant = the clicked item, one figure per test click (as eval's recall@100);
- **WANDS**: only ``query.csv`` is shared (no product or label files), so it has nothing to retrieve: skipped.

Each source's catalogue becomes a real index artefact (``write_artefact(..., lexical=True)``: the embeddings
of the index job's item text recipe and the BM25 index), searched by the serving ``Retriever`` as configured
(``retrieval: vector | hybrid``, ``num_candidates`` = ``lexical_candidates`` = 100, ``rrf_k`` = 60), for
the reference checkpoint and the zero-shot MiniLM; ``lexical`` is BM25 alone. Latency: the retrieve stage per
single-query call on the Home Depot artefact (p50 ms, vector vs hybrid, same queries, same process).

Results: bench/results/retrieval_hybrid.{json,md} (atomically; ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REFERENCE = REPO / "runs" / "reference" / "model"
K = 100


def recall(relevant: list[set[str]], ranked: list[list[str]], k: int) -> float:
    vals = [len(r & set(lst[:k])) / len(r) for r, lst in zip(relevant, ranked, strict=True) if r]
    return float(sum(vals) / len(vals)) if vals else float("nan")


def homedepot(
    cfg: Any, max_queries: int, threshold: float, max_items: int
) -> tuple[Any, list[str], list[set[str]], str]:
    """(catalogue, test queries, relevant ids per query, split note). ``max_items``: the catalogue cut to every
    product judged for the chosen queries (relevant or not) plus a seeded random sample of the others."""
    import polars as pl
    from shoprank.tasks.examples import hash_split, load_source

    frames = load_source(cfg.sources["homedepot"])
    j = frames["judgements"].with_columns(
        pl.col("query").str.to_lowercase().str.strip_chars().str.replace_all(r"\s+", " "),
        pl.col("item_id").cast(pl.Utf8),
    )
    j = j.with_columns(hash_split(j["query"], cfg.split, cfg.data_seed).alias("split"))
    j = j.filter(pl.col("split") == "test")
    rel = j.filter(pl.col("label") >= threshold).group_by("query", maintain_order=True).agg(pl.col("item_id"))
    rel = rel.sort("query").head(max_queries)
    cat = frames["catalogue"].with_columns(pl.col("item_id").cast(pl.Utf8))
    total = cat.height
    if max_items and cat.height > max_items:
        judged = j.filter(pl.col("query").is_in(rel["query"].implode()))["item_id"].unique()
        keep = cat["item_id"].is_in(judged.implode())
        others = cat.filter(~keep).sample(max(0, max_items - int(keep.sum())), seed=0)
        cat = pl.concat([cat.filter(keep), others])
    sample = " (every product judged for these queries, then a seeded random sample)" if cat.height < total else ""
    note = (f"unseen-query test split (hash of the normalised query, test_fraction={cfg.split.test_fraction}, "
            f"seed {cfg.data_seed}); relevant = judged relevance >= {threshold}; catalogue: {cat.height} of the "
            f"{total} products{sample}")  # fmt: skip
    return cat, rel["query"].to_list(), [set(x) for x in rel["item_id"].to_list()], note


def bestbuy(cfg: Any, max_queries: int) -> tuple[Any, list[str], list[set[str]], str]:
    """(catalogue, one query per test click, the clicked item, split note)."""
    from shoprank.clicks.text import normalize_query
    from shoprank.eval.runner import catalogue_items, click_log_split
    from shoprank.tasks.examples import load_source

    frames = load_source(cfg.sources["bestbuy"])
    cat = frames["catalogue"].unique("item_id", keep="first", maintain_order=True)
    _, _, test = click_log_split(frames["events"], catalogue_items(cat), cfg.split)
    test = test.head(max_queries * 3)  # clicks, in time order: the start of the test period
    note = (
        f"time split test period (last {cfg.split.test_fraction:.0%} of the click log by time), "
        f"{test.height} clicks on catalogue items; relevant = the clicked item"
    )
    queries = [normalize_query(q) for q in test["query"].to_list()]
    return cat, queries, [{i} for i in test["item_id"].to_list()], note


def rankings(retriever: Any, qemb: Any, queries: list[str], ids: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for a in range(0, len(queries), 64):
        for pos in retriever.retrieve(qemb[a : a + 64], [None] * len(queries[a : a + 64]), K, queries[a : a + 64]):
            out.append([ids[p] for p in pos])
    return out


def latency(retriever: Any, qemb: Any, queries: list[str], n: int = 200) -> float:
    """p50 ms of the retrieve stage on single-query calls."""
    import numpy as np
    from shoprank.serving.stages import RetrieveJob

    times = []
    for i in range(min(n, len(queries))):
        t0 = time.perf_counter()
        retriever([RetrieveJob(qemb[i], None, 200, queries[i])])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REFERENCE))
    ap.add_argument("--max-queries", type=int, default=2000, help="per source (Best Buy: 3x this many clicks)")
    ap.add_argument("--relevant", type=float, default=2.5, help="Home Depot: relevant = judged relevance >= this")
    ap.add_argument("--max-items", type=int, default=0, help="Home Depot catalogue cap (0: all 45,958)")
    ap.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot MiniLM rows")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "retrieval_hybrid"))
    args = ap.parse_args(argv)

    import torch
    from shoprank.eval.runner import catalogue_items
    from shoprank.files import atomic_write_text
    from shoprank.model.checkpoint import load_checkpoint, load_model, read_manifest
    from shoprank.retrieval.artefact import load_artefact, write_artefact
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import Retriever
    from shoprank.tasks.config import DataConfig

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    manifest = read_manifest(args.checkpoint)
    cfg = DataConfig.of(manifest["train_config"])
    models = {"reference": load_checkpoint(args.checkpoint, "cpu")[0]}
    if not args.no_zero_shot:
        models["zero_shot"] = load_model(None, encoder="minilm", device="cpu")[0]
    sources = {"homedepot": homedepot(cfg, args.max_queries, args.relevant, args.max_items),
               "bestbuy": bestbuy(cfg, args.max_queries)}  # fmt: skip
    vector = ServingConfig(num_candidates=K, retrieval="vector")
    hybrid = ServingConfig(num_candidates=K, retrieval="hybrid", lexical_candidates=K)
    rows: list[dict[str, Any]] = []
    lat: dict[str, float] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as tmp:
        for source, (cat, queries, relevant, note) in sources.items():
            items = catalogue_items(cat, manifest)  # the index job's item text (the checkpoint's pair recipe)
            cat = cat.with_columns(cat["item_id"].cast(str)).unique("item_id", keep="first", maintain_order=True)
            ids = cat["item_id"].to_list()
            texts = dict(zip(items["item_id"].to_list(), items["item"].to_list(), strict=True))
            print(f"{source}: {len(ids)} items, {len(queries)} test queries/clicks ({note})", flush=True)
            lexical_done = False
            for name, model in models.items():
                t0 = time.perf_counter()
                emb = model.embed([texts[i] for i in ids], batch_size=256)
                qemb = model.embed(queries, batch_size=256)
                path = write_artefact(Path(tmp) / f"{source}-{name}", cat, emb, model_version=name, lexical=True)
                art = load_artefact(path)
                ret_v, ret_h = Retriever(art, vector), Retriever(art, hybrid)
                got = {"vector": rankings(ret_v, qemb, queries, ids), "hybrid": rankings(ret_h, qemb, queries, ids)}
                if not lexical_done:
                    lex = art.lexical.search(queries, K)
                    got["lexical"] = [[ids[p] for p in pos] for pos, _ in lex]
                    lexical_done = True
                for system, ranked in got.items():
                    label = system if system == "lexical" else f"{name} {system}"
                    r100, r10 = recall(relevant, ranked, 100), recall(relevant, ranked, 10)
                    rows.append({"source": source, "system": label, "split": note, "queries": len(queries),
                                 "recall@100": r100, "recall@10": r10})  # fmt: skip
                    print(f"  {label:24s} recall@100 {r100:.4f}  recall@10 {r10:.4f}", flush=True)
                if source == "homedepot" and name == "reference":
                    lat = {"vector_p50_ms": latency(ret_v, qemb, queries),
                           "hybrid_p50_ms": latency(ret_h, qemb, queries)}  # fmt: skip
                    print(f"  retrieve p50 (1 query/call, {len(ids)} items): {lat}", flush=True)
                print(f"  ({name}: {time.perf_counter() - t0:.0f}s)", flush=True)
    result = {"rows": rows, "latency": lat, "seconds": round(time.perf_counter() - t_start, 1),
              "config": {"num_candidates": K, "lexical_candidates": K, "rrf_k": hybrid.rrf_k,
                         "relevant_threshold_homedepot": args.relevant, "max_queries": args.max_queries,
                         "max_items_homedepot": args.max_items},
              "checkpoint": str(args.checkpoint)}  # fmt: skip
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
    atomic_write_text(out.with_suffix(".md"), render(result))
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = ["# Hybrid retrieval: recall of retrieval alone (`python bench/retrieval_hybrid.py`)", "",
             "Top-100 candidates of the retrieve stage alone (no ranker), one run. `vector`: the ANN side "
             "(exact here); "
             "`hybrid`: ANN top-100 and BM25 top-100 fused by reciprocal-rank fusion (k = 60), cut to 100; "
             "`lexical`: BM25 alone (bm25s, the artefact's lexical index).", ""]  # fmt: skip
    for source in dict.fromkeys(r["source"] for r in rows):
        rs = [r for r in rows if r["source"] == source]
        lines += [
            f"## {source}",
            "",
            f"Split: {rs[0]['split']}; {rs[0]['queries']} queries (clicks for Best Buy).",
            "",
            "| system | recall@100 | recall@10 | recall@100 / vector |",
            "| --- | ---: | ---: | ---: |",
        ]
        base = {r["system"].split()[0]: r["recall@100"] for r in rs if r["system"].endswith(" vector")}
        for r in rs:
            b = base.get(r["system"].split()[0]) or base.get("reference")
            ratio = f"{r['recall@100'] / b:.3f}" if b else ""
            lines.append(f"| {r['system']} | {r['recall@100']:.4f} | {r['recall@10']:.4f} | {ratio} |")
        lines.append("")
    lat = result.get("latency") or {}
    if lat:
        lines += ["## Latency (Home Depot artefact, reference model)", "",
                  f"Retrieve stage, one query per call, p50: vector {lat['vector_p50_ms']:.2f} ms, hybrid "
                  f"{lat['hybrid_p50_ms']:.2f} ms (ratio {lat['hybrid_p50_ms'] / lat['vector_p50_ms']:.2f}x); "
                  "the query encoder (not included) dominates a search either way.", ""]  # fmt: skip
    lines += [
        "WANDS: only `query.csv` is shared (no product or label files): nothing to retrieve, no figure.",
        "",
        f"Run time {result['seconds']} s; config {json.dumps(result['config'])}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
