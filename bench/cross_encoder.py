"""The cross-encoder phase (issue 23): the first phase alone vs + the cross-encoder reranking its top N.

    flock /tmp/shoprank-ray.lock python bench/cross_encoder.py [--cross runs/cross/model] [--n 10 20 50]

First phase: the reference bi-encoder (runs/reference/model), scored by the same code paths as
``shoprank eval`` (``shoprank.eval.runner`` / ``shoprank.eval.tasks``):

- **Home Depot**, graded relevance on the held-out *unseen-query* test split (query-hash split of
  the reference config): the relevance head (lexical term included, clipped to 0..1) orders each
  query's judged items; nDCG@10 per query, mean. Rows: the first 2,000 test rows by whole queries
  (``--max-rows 2000``, as bench/results/reference_eval.md) and the whole test split.
- **Best Buy**, MAP@5 on the *time split*'s test clicks: the learned click blend
  (``learned_blend``: live counts, user features, fitted on the training log's newest period) and,
  beside it, the bi-encoder's own ranking (``model``).

Second phase: the cross-encoder (``shoprank.model.cross_encoder``) rescoring the first phase's top
N per query/click. Two ways, both measured: ``ce`` orders the top N by the cross-encoder alone
(relevance head on Home Depot, click logit on Best Buy); ``fused`` orders them by
``w * z(ce) + (1 - w) * z(first)`` on Home Depot (scores standardised per run) and by
``w * ce_logit - log(1 + first-phase rank)`` on Best Buy: a rerank *after* the blend, with ``w``
chosen on the validation split / period (never the test one). Printed and written to
bench/results/cross_encoder.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
W_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BB_W_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


class PairScores:
    """Cross-encoder scores of (query, item text) pairs, each pair scored once; counts the work."""

    def __init__(self, model: Any, task: str) -> None:
        self.model, self.task, self.cache = model, task, {}
        self.pairs, self.seconds = 0, 0.0

    def __call__(self, queries: list[str], texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys((q, t) for q, t in zip(queries, texts, strict=True) if (q, t) not in self.cache))
        if todo:
            t0 = time.perf_counter()
            s = self.model.score([q for q, _ in todo], [t for _, t in todo], batch_size=64)[self.task]
            self.seconds += time.perf_counter() - t0
            self.pairs += len(todo)
            self.cache.update(zip(todo, s.tolist(), strict=True))
        return np.array([self.cache[(q, t)] for q, t in zip(queries, texts, strict=True)], dtype=np.float64)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def rerank_groups(groups: np.ndarray, first: np.ndarray, second: np.ndarray, n: int) -> np.ndarray:
    """Final scores: each group's top ``n`` by ``first`` reordered by ``second``, above the rest (which keep
    the first phase's order)."""
    out = np.empty_like(first, dtype=np.float64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        order = idx[np.argsort(-first[idx], kind="stable")]
        top, rest = order[:n], order[n:]
        out[rest] = -np.arange(1, rest.size + 1, dtype=np.float64)
        out[top] = 1e6 + second[top]
    return out


def rerank_lists(lists: list[list[str]], score: Any, n: int) -> list[list[str]]:
    """Each list's top ``n`` reordered by ``score(position, item)`` (stable), the tail unchanged."""
    out = []
    for lst in lists:
        head = lst[:n]
        s = [score(r, i) for r, i in enumerate(head)]
        order = sorted(range(len(head)), key=lambda r: -s[r])
        out.append([head[r] for r in order] + lst[n:])
    return out


# -- Home Depot -------------------------------------------------------------------------------------
def homedepot(model: Any, manifest: dict, ce: Any, ns: list[int], log: Any) -> dict[str, Any]:
    from shoprank.eval import metrics as M
    from shoprank.eval.runner import _cap, source_of
    from shoprank.eval.tasks import pair_raw
    from shoprank.model.embeddings import EmbeddingCache
    from shoprank.model.text import recipes_of
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import build_task_data

    cfg = DataConfig.of(manifest["train_config"])
    cfg = cfg.model_copy(update={"tasks": {"relevance": cfg.tasks["relevance"]}})
    data = build_task_data(cfg, recipes=recipes_of(manifest))
    cache = EmbeddingCache(model)
    scorer = PairScores(ce, "relevance")

    def prepare(split: str, cap: int | None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        df = data.split("relevance", split)
        df = _cap(df.filter(source_of(df) == "homedepot"), cap, cfg.data_seed)
        first = np.clip(pair_raw(model, "relevance", df, cache), 0.0, 1.0)
        second = scorer(df["query"].to_list(), df["item"].to_list())
        return df, df["group"].to_numpy(), df["label"].to_numpy(), first, second

    # w of the fused score: chosen on the validation split (its first 2,000 rows by whole queries)
    _, g, y, first, second = prepare("val", 2000)
    fused_val = {w: M.mean_ndcg_at_k(g, y, w * _z(second) + (1 - w) * _z(first), 10) for w in W_GRID}
    w = max(W_GRID, key=lambda k: (fused_val[k], -k))
    log(f"homedepot: fused weight {w} (val nDCG@10 {fused_val[w]:.4f})")
    rows = []
    for name, cap in (("test, first 2,000 rows", 2000), ("test, all rows", None)):
        df, g, y, first, second = prepare("test", cap)
        fused = w * _z(second) + (1 - w) * _z(first)
        sizes = df.group_by("group").len()["len"]
        row = {"rows": name, "queries": int(sizes.len()), "pairs": df.height, "mean_per_query": float(sizes.mean()),
               "first_phase": M.mean_ndcg_at_k(g, y, first, 10)}  # fmt: skip
        for n in ns:
            row[f"ce_top{n}"] = M.mean_ndcg_at_k(g, y, rerank_groups(g, first, second, n), 10)
            row[f"fused_top{n}"] = M.mean_ndcg_at_k(g, y, rerank_groups(g, first, fused, n), 10)
        rows.append(row)
        log(f"homedepot {name}: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})}")
    return {"w": w, "val_ndcg_by_w": fused_val, "rows": rows, "ce_pairs": scorer.pairs, "ce_seconds": scorer.seconds}


# -- Best Buy -----------------------------------------------------------------------------------------
def bestbuy(model: Any, manifest: dict, ce: Any, ns: list[int], log: Any) -> dict[str, Any]:
    import polars as pl
    from shoprank.data.sources.common import normalize_query
    from shoprank.eval import metrics as M
    from shoprank.eval.clickblend import ClickBlend, click_months
    from shoprank.eval.runner import catalogue_items, click_log_split, fit_periods, month_ranker
    from shoprank.model.embeddings import EmbeddingCache
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import load_source

    cfg = DataConfig.of(manifest["train_config"])
    frames = load_source(cfg.sources["bestbuy"])
    items = catalogue_items(frames["catalogue"], manifest)
    _, train, test = click_log_split(frames["events"], items, cfg.split)
    norm = pl.col("query").map_elements(normalize_query, return_dtype=pl.Utf8)
    test = test.with_columns(norm)
    model_fn = month_ranker(model, items, EmbeddingCache(model))
    text = dict(zip(items["item_id"].to_list(), items["item"].to_list(), strict=True))
    scorer = PairScores(ce, "click")

    def blend_lists(history: pl.DataFrame, clicks: pl.DataFrame, fit_history: pl.DataFrame) -> list[list[str]]:
        fitted = ClickBlend(items, model_fn, use_user=True, online=True).fit(*fit_periods(fit_history))
        return fitted.rank(history, clicks)

    def ce_of(queries: list[str], lists: list[list[str]], n: int) -> list[dict[str, float]]:
        qs = [q for q, lst in zip(queries, lists, strict=True) for _ in lst[:n]]
        ids = [i for lst in lists for i in lst[:n]]
        s = scorer(qs, [text[i] for i in ids]).tolist()
        out, k = [], 0
        for lst in lists:
            m = len(lst[:n])
            out.append(dict(zip(lst[:n], s[k : k + m], strict=True)))
            k += m
        return out

    def fused(queries: list[str], lists: list[list[str]], n: int, w: float) -> list[list[str]]:
        ce = ce_of(queries, lists, n)
        it = iter(ce)
        out = []
        for lst in lists:
            c = next(it)
            out.extend(rerank_lists([lst], lambda r, i, c=c: w * c[i] - np.log1p(r), n))
        return out

    # the validation period: the blend fitted on the period before it (as for the test period)
    t0 = time.perf_counter()
    hist_n = train.with_columns(norm)
    h1, val = fit_periods(hist_n)
    val_lists = blend_lists(h1, val, h1)
    test_lists = blend_lists(train, test, hist_n)
    keys = list(zip(test["query"].to_list(), click_months(test), strict=True))
    ranked = model_fn(keys)
    model_lists = [ranked[k] for k in keys]
    log(f"bestbuy: first phase lists in {time.perf_counter() - t0:.0f}s ({test.height} test clicks, {val.height} val)")
    rel = [[i] for i in test["item_id"].to_list()]
    vrel = [[i] for i in val["item_id"].to_list()]
    q_test, q_val = test["query"].to_list(), val["query"].to_list()
    out: dict[str, Any] = {"test_clicks": test.height, "val_clicks": val.height, "rows": []}
    for system, lists in (("learned_blend", test_lists), ("model", model_lists)):
        row: dict[str, Any] = {"system": system, "first_phase": M.map_at_k(rel, lists, 5)}
        for n in ns:
            row[f"ce_top{n}"] = M.map_at_k(rel, fused(q_test, lists, n, 1e6), 5)
            if system == "learned_blend":
                by_w = {w: M.map_at_k(vrel, fused(q_val, val_lists, n, w), 5) for w in BB_W_GRID}
                w = max(BB_W_GRID, key=lambda k: (by_w[k], -k))
                row[f"fused_top{n}"] = M.map_at_k(rel, fused(q_test, lists, n, w), 5)
                row[f"fused_top{n}_w"] = w
                out[f"val_map5_by_w_top{n}"] = by_w
        out["rows"].append(row)
        log(f"bestbuy {system}: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})}")
    out.update({"ce_pairs": scorer.pairs, "ce_seconds": scorer.seconds})
    return out


def _bb_queries(manifest: dict) -> list[str]:
    """The Best Buy time split's test queries (distinct, in click order), as served (normalised)."""
    from shoprank.data.sources.common import normalize_query
    from shoprank.eval.runner import catalogue_items, click_log_split
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import load_source

    cfg = DataConfig.of(manifest["train_config"])
    frames = load_source(cfg.sources["bestbuy"])
    _, _, test = click_log_split(frames["events"], catalogue_items(frames["catalogue"], manifest), cfg.split)
    return list(dict.fromkeys(normalize_query(q) for q in test["query"].to_list()))


# -- latency --------------------------------------------------------------------------------------------
def latency(index: Path, reference: Path, cross: Path, ns: list[int], queries: list[str], log: Any) -> dict[str, Any]:
    """c1 p50/p90 of in-process ``SearchPipeline`` searches (k=10), first phase alone vs + rerank of the top N,
    alternating rounds so background load hits every setting alike."""
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import SearchPipeline
    from shoprank.serving.validation import Query

    settings = [0, *ns]
    pipes = {n: SearchPipeline(index, reference, device="cpu", config=ServingConfig(
        rerank_top_n=n, cross_encoder_dir=str(cross) if n else None)) for n in settings}  # fmt: skip
    times: dict[int, list[float]] = {n: [] for n in settings}
    rerank: dict[int, list[float]] = {n: [] for n in settings}
    for q in queries[:5]:  # warm-up
        for n in settings:
            pipes[n].search(Query(query=q, k=10, weights=dict(ServingConfig().blend_weights)))
    for q in queries:
        for n in settings:
            t0 = time.perf_counter()
            res = pipes[n].search(Query(query=q, k=10, weights=dict(ServingConfig().blend_weights)))
            times[n].append((time.perf_counter() - t0) * 1e3)
            rerank[n].append(res.timings_ms.get("rerank", 0.0))
    base = float(np.median(times[0]))
    out = {"queries": len(queries), "index": str(index), "rows": []}
    for n in settings:
        p50 = float(np.median(times[n]))
        row = {"rerank_top_n": n, "p50_ms": p50, "p90_ms": float(np.percentile(times[n], 90)),
               "rerank_p50_ms": float(np.median(rerank[n])), "ratio_to_first_phase": p50 / base}  # fmt: skip
        out["rows"].append(row)
        log(f"latency: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})}")
    return out


# -- report ---------------------------------------------------------------------------------------------
def markdown(res: dict[str, Any]) -> str:
    ns = res["n"]
    lines = [
        "# Cross-encoder phase: first phase alone vs + cross-encoder reranking its top N",
        "",
        f"`{res['command']}` ({res['wall_seconds']:.0f} s on this 2-core machine). Cross-encoder: "
        f"`{res['cross_encoder']}` ({res['cross_version']}); first phase: `{res['reference']}`. "
        f"Raw output: `{res['name']}.json`.",
        "",
        f"Cross-encoder training: `{res['train'].get('command', '')}`: {res['train'].get('summary', '')}",
        "",
        "`ce`: the top N ordered by the cross-encoder alone; `fused`: by the cross-encoder and the first "
        "phase together, the weight chosen on the validation split/period (never the test one). See the "
        "script's docstring for the exact formulas.",
        "",
        "## Home Depot: nDCG@10 on unseen test queries (query-hash split)",
        "",
        f"Fused weight w = {res['homedepot']['w']} (on z-scored cross-encoder relevance vs first phase).",
        "",
    ]
    cols = ["first_phase"] + [f"{k}_top{n}" for n in ns for k in ("ce", "fused")]
    lines.append("| rows | queries | judged items / query | " + " | ".join(cols) + " |")
    lines.append("| --- " * (3 + len(cols)) + "|")
    for r in res["homedepot"]["rows"]:
        vals = " | ".join(f"{r[c]:.4f}" for c in cols)
        lines.append(f"| {r['rows']} | {r['queries']} | {r['mean_per_query']:.1f} | {vals} |")
    bb = res["bestbuy"]
    lines += [
        "",
        f"## Best Buy: MAP@5 on the time split's test period ({bb['test_clicks']} test clicks)",
        "",
        "`learned_blend` is the served ranking's click blend (`learned_blend` of reference_eval.md); `model` "
        "the bi-encoder alone. `fused` = rerank *after* the blend: `w * ce_logit - log(1 + blend rank)`.",
        "",
    ]
    cols = ["first_phase"] + [f"ce_top{n}" for n in ns] + [f"fused_top{n}" for n in ns]
    lines.append("| first phase | " + " | ".join(cols) + " |")
    lines.append("| --- " * (1 + len(cols)) + "|")
    for r in bb["rows"]:
        vals = " | ".join(
            (f"{r[c]:.4f}" + (f" (w={r[c + '_w']})" if c + "_w" in r else "")) if c in r else "–" for c in cols
        )
        lines.append(f"| {r['system']} | {vals} |")
    hd = res["homedepot"]
    if res.get("latency"):
        lat = res["latency"]
        lines += [
            "",
            f"## Latency: c1 in-process search (k=10), {lat['queries']} Best Buy test queries, `{lat['index']}`",
            "",
            "| rerank_top_n | p50 ms | p90 ms | rerank stage p50 ms | p50 / first phase alone |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {r['rerank_top_n']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['rerank_p50_ms']:.1f} | "
                  f"{r['ratio_to_first_phase']:.2f} |" for r in lat["rows"]]  # fmt: skip
    lines += [
        "",
        "## Cost",
        "",
        f"Cross-encoder pairs scored (each distinct pair once, batches of 64, torch fp32 on CPU): Home Depot "
        f"{hd['ce_pairs']} in {hd['ce_seconds']:.0f} s, Best Buy {bb['ce_pairs']} in {bb['ce_seconds']:.0f} s "
        f"({(hd['ce_pairs'] + bb['ce_pairs']) / max(1e-9, hd['ce_seconds'] + bb['ce_seconds']):.0f} pairs/s).",
        "",
    ]
    return "\n".join(lines)


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cross", type=Path, default=REPO / "runs" / "cross" / "model")
    p.add_argument("--reference", type=Path, default=REPO / "runs" / "reference" / "model")
    p.add_argument("--n", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--latency-index", type=Path, default=REPO / "out" / "replay_parity" / "index",
                   help="an index built with --reference (Best Buy catalogue) for the c1 latency rows")  # fmt: skip
    p.add_argument("--latency-n", type=int, nargs="+", default=[10, 20])
    p.add_argument("--latency-queries", type=int, default=60)
    p.add_argument("--name", default="cross_encoder", help="results file name (bench/results/NAME.{md,json})")
    p.add_argument("--skip-quality", action="store_true", help="the latency rows alone")
    args = p.parse_args(argv)
    import torch
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.model.checkpoint import load_checkpoint
    from shoprank.model.cross_encoder import cross_version, load_cross_encoder

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, manifest = load_checkpoint(args.reference)
    ce, ce_manifest = load_cross_encoder(args.cross)
    train_info: dict[str, Any] = {}
    summary = args.cross.parent / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        train_info = {
            "command": "flock /tmp/shoprank-ray.lock shoprank train-cross --config "
            f"{s.get('config') or 'configs/cross_encoder.yaml'} --out {_rel(args.cross.parent)}",
            "summary": f"best step {s.get('best_step')}, {s.get('wall_seconds')} s wall, best val "
            + json.dumps(
                {k: round(v, 4) for k, v in (s.get("best_metrics") or {}).items() if k.startswith("val")}
            ),  # fmt: skip
        }
    log = lambda s: print(s, flush=True)  # noqa: E731
    res: dict[str, Any] = {
        "command": "flock /tmp/shoprank-ray.lock python bench/cross_encoder.py " + " ".join(argv or sys.argv[1:]),
        "cross_encoder": _rel(args.cross),
        "cross_version": cross_version(ce_manifest),
        "reference": _rel(args.reference),
        "n": args.n,
        "name": args.name,
        "train": train_info,
    }
    if not args.skip_quality:
        res["homedepot"] = homedepot(model, manifest, ce, args.n, log)
        res["bestbuy"] = bestbuy(model, manifest, ce, args.n, log)
    if args.latency_index.is_dir():
        queries = _bb_queries(manifest)[: args.latency_queries]
        res["latency"] = latency(args.latency_index, args.reference, args.cross, args.latency_n, queries, log)
    if args.skip_quality:
        print(json.dumps(res.get("latency"), indent=1, default=float))
        return 0
    res["wall_seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{args.name}.json", res, indent=2, default=float)
    text = markdown(res)
    atomic_write_text(args.out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
