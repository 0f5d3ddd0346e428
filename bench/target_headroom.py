"""How much room the shared data leaves above the reference for issue 23's ranking targets.

    python bench/target_headroom.py [--checkpoint runs/reference/model] [--name target_headroom]

Floors and ceilings measured in one run beside the reference model, on the splits ``shoprank eval``
uses (every figure names its split):

- **Home Depot**, graded relevance on unseen queries (split ``query``, every test row): nDCG@10 of
  each query's judged items in random order (mean of 20 orders: the floor), BM25, zero-shot MiniLM,
  the reference's relevance head. Then the judgements' own noise: pairs of judgements of one query on
  two products with the *same normalised title* ("twins", every split) differ only by what no title
  shows (the judges, a product's picture, size or colour). Their spread estimates the noise a ranker
  that reads titles cannot explain; it is set against the spread of labels within test queries.
  Two simulated ceilings, each the mean of 20 draws of a fresh judgement of every test pair (truth
  + the twins' noise, rounded to the judges' steps of 1/3) scored against a ranking by the truth:
  ``signal-matched`` takes as truth each query's mean label plus its deviations shrunk to the variance
  left once the noise is taken out (a perfect title-only ranker under that noise; also at the 5th
  and 95th percentiles of the noise estimate, bootstrapped over twin pairs); ``optimistic`` takes
  each label itself as the truth (real truth has less spread than the labels, so this overstates
  what any ranker can measure). The simulated labels are not distributed like the real ones, so
  each system is also given as its share of the way from a random order to a perfect one (its own
  simulated random order for the ceilings); the target's share is beside them.
- **Best Buy**, MAP@5 of the served click blend on the test period (split ``time``): on test clicks
  whose query the training log has (``known``) and has not; the same blend's features fitted with
  every pairwise product of them (``quadratic``) and by a small MLP (both listwise, on the same
  fitting period as the served linear blend, settings fixed in advance): does a richer blend over the
  same signals gain? ``ceiling``: each test query's items ordered by the test period's own clicks.

Printed and written to bench/results/<name>.{md,json}.
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
DRAWS = 20
TARGET_NDCG = 0.94
LABEL_STEP = 1 / 6  # a mean of 3 judgements on 1..3 moves in thirds; labels are (r - 1) / 2


def _within(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y`` minus its group's mean."""
    _, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=y)
    return y - (sums / np.bincount(inv))[inv]


def twin_noise(frame: Any) -> dict[str, float]:
    """Spread of label differences between judgements of one query on products with one normalised title."""
    import polars as pl
    from shoprank.model.text import title_of

    df = frame.with_columns(
        pl.col("item").map_elements(title_of, return_dtype=pl.Utf8).str.to_lowercase()
        .str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars().alias("title")
    )  # fmt: skip
    groups = df.group_by(["group", "title"]).agg(pl.col("label"), pl.col("item_id").n_unique().alias("n"))
    diffs = [a - b for labels in groups.filter(pl.col("n") >= 2)["label"].to_list()
             for i, a in enumerate(labels) for b in labels[i + 1 :]]  # fmt: skip
    d = np.asarray(diffs, dtype=np.float64)
    if not d.size:
        raise SystemExit("no two products with one title judged for one query: cannot estimate the noise")
    boot = np.random.default_rng(0).choice(d, size=(1000, d.size))
    sds = np.sqrt(np.mean(boot**2, axis=1) / 2)
    return {"pairs": int(d.size), "noise_sd": float(np.sqrt(np.mean(d**2) / 2)),
            "noise_sd_p5": float(np.percentile(sds, 5)), "noise_sd_p95": float(np.percentile(sds, 95))}  # fmt: skip


def simulate(groups: np.ndarray, truth: np.ndarray, sd: float, rng: np.random.Generator) -> tuple[float, float]:
    """Mean nDCG@10 over DRAWS fresh judgements (``truth`` + noise of ``sd``, on the judges' steps) of
    ranking by the truth, and of a random order against the same judgements."""
    from shoprank.eval import metrics as M

    best, rand = [], []
    for _ in range(DRAWS):
        judged = np.round(np.clip(truth + rng.normal(0.0, sd, truth.size), 0.0, 1.0) / LABEL_STEP) * LABEL_STEP
        best.append(M.mean_ndcg_at_k(groups, judged, truth, 10))
        rand.append(M.mean_ndcg_at_k(groups, judged, rng.random(truth.size), 10))
    return float(np.mean(best)), float(np.mean(rand))


def homedepot(model: Any, zs: Any, manifest: dict, log: Any) -> dict[str, Any]:
    import polars as pl
    from shoprank.eval import metrics as M
    from shoprank.eval.baselines import score_pairs_bm25
    from shoprank.eval.runner import source_of
    from shoprank.eval.task_report import Caches
    from shoprank.eval.tasks import pair_raw
    from shoprank.model.embeddings import EmbeddingCache, embed_unique
    from shoprank.model.text import recipes_of, title_of
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import build_task_data

    cfg = DataConfig.of(manifest["train_config"])
    cfg = cfg.model_copy(update={"tasks": {"relevance": cfg.tasks["relevance"]}})
    data = build_task_data(cfg, recipes=recipes_of(manifest))
    frames = {s: data.split("relevance", s) for s in ("train", "val", "test")}
    frames = {s: f.filter(source_of(f) == "homedepot") for s, f in frames.items()}
    test = frames["test"]
    g, y = test["group"].to_numpy(), test["label"].to_numpy()
    caches = Caches(EmbeddingCache(model), EmbeddingCache(zs))

    def cosine(m: Any, cache: Any) -> np.ndarray:
        q = embed_unique(m, test["query"].to_list(), cache)
        i = embed_unique(m, test["item"].to_list(), cache)
        q, i = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (q, i))
        return (q * i).sum(1)

    rng = np.random.default_rng(0)
    nd = lambda s: M.mean_ndcg_at_k(g, y, s, 10)  # noqa: E731
    systems = {
        "random order (floor)": float(np.mean([nd(rng.random(y.size)) for _ in range(DRAWS)])),
        "bm25": nd(score_pairs_bm25(test["query"].to_list(), [title_of(t) for t in test["item"].to_list()])),
        "zero_shot": nd(cosine(zs, caches.zero_shot)),
        "reference": nd(np.clip(pair_raw(model, "relevance", test, caches.model), 0.0, 1.0)),
    }
    noise = twin_noise(pl.concat(list(frames.values()), how="diagonal_relaxed"))
    within = _within(g, y)
    floor = systems["random order (floor)"]
    gap = {k: (v - floor) / (1.0 - floor) for k, v in systems.items()}
    ceilings = {}
    for label, sd in (("at the twins' noise", noise["noise_sd"]), ("noise at its 5th percentile", noise["noise_sd_p5"]),
                      ("noise at its 95th percentile", noise["noise_sd_p95"])):  # fmt: skip
        scale = np.sqrt(max(0.0, 1.0 - sd**2 / np.mean(within**2)))
        ceilings[f"signal-matched ceiling, {label} (simulated)"] = simulate(g, y - within + scale * within, sd, rng)
    ceilings["optimistic ceiling, at the twins' noise (simulated)"] = simulate(g, y, noise["noise_sd"], rng)
    for k, (c, r) in ceilings.items():
        systems[k], gap[k] = c, (c - r) / (1.0 - r)
    out = {
        "split": "query",
        "rows": test.height,
        "queries": int(np.unique(g).size),
        "ndcg@10": systems,
        "share_of_gap": gap,
        "target_share_of_gap": (TARGET_NDCG - floor) / (1.0 - floor),
        "within_query_label_sd": float(np.sqrt(np.mean(within**2))),
        "label_sd": float(y.std()),
        **{f"twin_{k}": v for k, v in noise.items()},
    }
    out["noise_share_of_within_query_variance"] = noise["noise_sd"] ** 2 / out["within_query_label_sd"] ** 2
    log(f"homedepot: {json.dumps(out, default=float)}")
    return out


# -- Best Buy --------------------------------------------------------------------------------------------
def _pack(walked: list, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> tuple:
    """Padded [clicks, candidates, features] tensors, the mask, each click's target position (-1: absent)."""
    import torch

    allx = np.concatenate([x for _, x, _ in walked])
    if mean is None or scale is None:
        mean, scale = allx.mean(0), allx.std(0) + 1e-6
    width = max(len(c) for c, _, _ in walked)
    xs = np.zeros((len(walked), width, allx.shape[1]), np.float32)
    mask = np.zeros((len(walked), width), bool)
    target = np.full(len(walked), -1)
    for n, (c, x, i) in enumerate(walked):
        xs[n, : len(x)] = (x - mean) / scale
        mask[n, : len(x)] = True
        target[n] = c.index(i) if i in c else -1
    return torch.from_numpy(xs), torch.from_numpy(mask), torch.from_numpy(target), mean, scale


def _ap5(scores: Any, mask: Any, target: Any) -> np.ndarray:
    """AP@5 of each click (one relevant item): 1 / rank within the top 5, else 0; ties count against."""
    from shoprank.eval.metrics import average_precision_at_k

    s = scores.masked_fill(~mask, -1e9).detach().numpy()
    t = target.numpy()
    out = np.zeros(len(t))
    for n in np.flatnonzero(t >= 0):
        pos = np.arange(s.shape[1])
        ranked = np.lexsort((pos == t[n], -s[n]))  # by score; the clicked item after any it ties with
        out[n] = average_precision_at_k([t[n]], ranked.tolist(), 5)
    return out


def _quadratic(x: Any) -> Any:
    import torch

    iu = torch.triu_indices(x.shape[-1], x.shape[-1])
    return torch.cat([x, (x.unsqueeze(-1) * x.unsqueeze(-2))[..., iu[0], iu[1]]], -1)


def _listwise(net: Any, x: Any, mask: Any, target: Any, steps: int, l2: float, lbfgs: bool) -> Any:
    import torch

    keep = target >= 0
    x, mask, target = x[keep], mask[keep], target[keep]
    params = list(net.parameters())

    def loss() -> Any:
        opt.zero_grad()
        logits = net(x).squeeze(-1).masked_fill(~mask, -1e9)
        out = torch.nn.functional.cross_entropy(logits, target) + l2 * sum((p**2).sum() for p in params)
        out.backward()
        return out

    if lbfgs:
        opt = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")
        opt.step(loss)
    else:
        opt = torch.optim.Adam(params, lr=3e-3)
        for _ in range(steps):
            opt.step(loss)
    return net


def bestbuy(model: Any, manifest: dict, log: Any) -> dict[str, Any]:
    import polars as pl
    import torch
    from shoprank.clicks.counts import ClickCounts
    from shoprank.clicks.text import compact_query
    from shoprank.data.sources.common import normalize_query
    from shoprank.eval import metrics as M
    from shoprank.eval.baselines import QueryLookup
    from shoprank.eval.clickblend import ClickBlend, by_time
    from shoprank.eval.runner import catalogue_items, click_log_split, fit_periods, month_ranker
    from shoprank.model.embeddings import EmbeddingCache
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import load_source

    cfg = DataConfig.of(manifest["train_config"])
    frames = load_source(cfg.sources["bestbuy"])
    items = catalogue_items(frames["catalogue"], manifest)
    _, train, test = click_log_split(frames["events"], items, cfg.split)
    norm = pl.col("query").map_elements(normalize_query, return_dtype=pl.Utf8)
    train, test = train.with_columns(norm), by_time(test.with_columns(norm))
    history, later = fit_periods(train)
    blend = ClickBlend(items, month_ranker(model, items, EmbeddingCache(model)), use_user=True, online=True)
    fit_x, fit_m, fit_t, mean, scale = _pack(blend.walk(ClickCounts.of(history), by_time(later)))
    test_x, test_m, test_t, _, _ = _pack(blend.walk(ClickCounts.of(train), test), mean, scale)
    torch.manual_seed(0)
    n = fit_x.shape[-1]
    linear = _listwise(torch.nn.Linear(n, 1, bias=False), fit_x, fit_m, fit_t, 200, 1e-3, lbfgs=True)
    quad = torch.nn.Linear(n + n * (n + 1) // 2, 1, bias=False)
    torch.nn.init.zeros_(quad.weight)
    quad = _listwise(quad, _quadratic(fit_x), fit_m, fit_t, 300, 1e-2, lbfgs=True)
    mlp = torch.nn.Sequential(torch.nn.Linear(n, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    mlp = _listwise(mlp, fit_x, fit_m, fit_t, 300, 1e-4, lbfgs=False)
    with torch.no_grad():
        ap = {
            "served blend (linear)": _ap5(linear(test_x).squeeze(-1), test_m, test_t),
            "quadratic blend": _ap5(quad(_quadratic(test_x)).squeeze(-1), test_m, test_t),
            "mlp blend (32 hidden)": _ap5(mlp(test_x).squeeze(-1), test_m, test_t),
        }
    ceiling = QueryLookup(test["query"].to_list(), test["item_id"].to_list())
    items_of = test["item_id"].to_list()
    ap["ceiling"] = np.array([
        M.average_precision_at_k([it], ceiling.rank(q, 5), 5)
        for q, it in zip(test["query"].to_list(), items_of, strict=True)
    ])  # fmt: skip
    seen = {compact_query(q) for q in train["query"].to_list()}
    known = np.array([compact_query(q) in seen for q in test["query"].to_list()])
    rows = [{"system": k, "all": float(v.mean()), "known": float(v[known].mean()), "unknown": float(v[~known].mean())}
            for k, v in ap.items()]  # fmt: skip
    out = {"split": "time", "test_clicks": test.height, "known_share": float(known.mean()),
           "fit_clicks": int((fit_t >= 0).sum()), "absent_from_candidates": float((test_t < 0).float().mean()),
           "rows": rows}  # fmt: skip
    log(f"bestbuy: {json.dumps(out)}")
    return out


def markdown(res: dict[str, Any]) -> str:
    hd, bb = res["homedepot"], res["bestbuy"]
    lines = [
        "# Headroom above the reference for issue 23's ranking targets",
        "",
        f"`{res['command']}` ({res['wall_seconds']:.0f} s on this 2-core machine; checkpoint "
        f"`{res['checkpoint']}`). Raw output: `{res['name']}.json`. What each row is: the script's docstring.",
        "",
        f"## Home Depot: nDCG@10 on unseen queries (split `query`, all {hd['rows']} test rows, "
        f"{hd['queries']} queries); target 0.94",
        "",
        "| system | nDCG@10 | share of the way from random order to perfect |",
        "| --- | --- | --- |",
        *[f"| {k} | {v:.4f} | {hd['share_of_gap'][k]:.1%} |" for k, v in hd["ndcg@10"].items()],
        f"| target | {TARGET_NDCG:.4f} | {hd['target_share_of_gap']:.1%} |",
        "",
        f"Judgement noise: {hd['twin_pairs']} pairs of judgements of one query on two products with the same "
        f"normalised title differ with sd {hd['twin_noise_sd']:.3f} per judgement (labels on 0..1; 5th–95th "
        f"percentile {hd['twin_noise_sd_p5']:.3f}–{hd['twin_noise_sd_p95']:.3f}; "
        f"{2 * hd['twin_noise_sd']:.2f} on the judges' 1..3 scale). Labels within a test query spread with sd "
        f"{hd['within_query_label_sd']:.3f} (all labels: {hd['label_sd']:.3f}): the twins' noise is "
        f"{hd['noise_share_of_within_query_variance']:.0%} of the within-query variance a ranker has to explain.",
        "",
        f"## Best Buy: MAP@5 on the test period (split `time`, {bb['test_clicks']} clicks); target 0.82",
        "",
        f"{bb['known_share']:.1%} of test clicks are for a query the training log has (`known`); "
        f"{bb['absent_from_candidates']:.1%} of clicked items are not among the blend's candidates. Blends "
        f"fitted on {bb['fit_clicks']} clicks of the training log's newest period.",
        "",
        "| system | all | known queries | unknown queries |",
        "| --- | --- | --- | --- |",
        *[f"| {r['system']} | {r['all']:.4f} | {r['known']:.4f} | {r['unknown']:.4f} |" for r in bb["rows"]],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/reference/model")
    ap.add_argument("--name", default="target_headroom")
    args = ap.parse_args(argv)
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.model.checkpoint import load_checkpoint, load_model

    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    model, manifest = load_checkpoint(args.checkpoint, "cpu")
    zs = load_model(None, encoder=model.config.encoder, device="cpu")[0]
    res: dict[str, Any] = {
        "name": args.name,
        "checkpoint": args.checkpoint,
        "command": "python bench/target_headroom.py" + (f" --checkpoint {args.checkpoint}"
                                                        if args.checkpoint != "runs/reference/model" else ""),
        "homedepot": homedepot(model, zs, manifest, log),
        "bestbuy": bestbuy(model, manifest, log),
    }  # fmt: skip
    res["wall_seconds"] = time.perf_counter() - t0
    out = REPO / "bench" / "results"
    atomic_write_json(out / f"{args.name}.json", res, indent=2)
    text = markdown(res)
    atomic_write_text(out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
