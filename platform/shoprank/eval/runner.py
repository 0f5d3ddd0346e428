"""``shoprank eval``: a checkpoint's per-task metrics on held-out splits, against baselines.

Three entry points:

- ``evaluate_checkpoint(ckpt)``: rebuilds the training data from the checkpoint's own config
  (same deterministic splits) and reports every task on its *test* split, per source;
- ``evaluate_judgements(ckpt, csv)``: graded nDCG@10 per query and Spearman on any
  ``query, product_title[, product_description], label`` file;
- ``evaluate_clicks(ckpt, clicks, catalogue)``: MAP@5 and recall@100 on a Best Buy format log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from shoprank.clicks.features import CLICK_BLEND_FILE, BlendWeights
from shoprank.data.sources.common import normalize_query
from shoprank.errors import DataError
from shoprank.eval import metrics as M
from shoprank.eval.baselines import BM25, QueryLookup, back_off, blend
from shoprank.eval.clickblend import ClickBlend, RankFn, RankKey, click_months
from shoprank.eval.task_report import Caches, row, task_rows
from shoprank.eval.tasks import numeric, pair_raw
from shoprank.files import atomic_write_json
from shoprank.model.checkpoint import load_checkpoint, load_model, model_version
from shoprank.model.embeddings import EmbeddingCache, embed_unique
from shoprank.model.features import month_features
from shoprank.model.lexical import lexical_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.registry import ranking_head, spec
from shoprank.model.text import PAIR, item_text, recipes_of, title_of
from shoprank.tasks.config import DataConfig, SplitConfig
from shoprank.tasks.examples import build_task_data, catalogue_view, time_split

MAX_EVAL_ROWS = 4000
# Best Buy lookup: clicks decay with a 7-day half-life; single words and the nearest known
# queries back off unseen ones. Chosen on the validation period (train -> val), then fixed
# for the test period.
LOOKUP_HALF_LIFE_DAYS = 7.0
LOOKUP_WORD_WEIGHT = 0.1
LOOKUP_NEIGHBOUR_WEIGHT = 0.5
MODEL_BLEND_WEIGHT = 0.05


def source_of(df: pl.DataFrame) -> pl.Series:
    """The source name of each example (the prefix of its ``group``)."""
    return df["group"].str.split_exact(":", 1).struct.field("field_0")


def _cap(df: pl.DataFrame, n: int | None, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` rows, keeping whole groups (queries) together."""
    if not n or df.height <= n:
        return df
    groups = df["group"].unique(maintain_order=True).sort()
    rng = np.random.default_rng(seed)
    order = rng.permutation(groups.len())
    keep, total = [], 0
    sizes = dict(df.group_by("group").len().iter_rows())
    for i in order:
        g = groups[int(i)]
        keep.append(g)
        total += sizes[g]
        if total >= n:
            break
    return df.filter(pl.col("group").is_in(keep))


# -- ranking a catalogue --------------------------------------------------------------------
@torch.inference_mode()
def rank_catalogue(
    model: MultiTaskModel,
    queries: list[str],
    items: pl.DataFrame,
    k: int = 100,
    head: str | None = None,
    cache: EmbeddingCache | None = None,
    month: int = 0,
) -> dict[str, list[str]]:
    """Top-k catalogue ``item_id`` per query by the best trained head (:func:`ranking_head`: click,
    then relevance, else cosine similarity: zero-shot), for a search in ``month`` (0: unknown)."""
    model.eval()
    if head is None:
        head = ranking_head({t for t in model.trained_tasks if model.is_trained(t)})
    iemb = embed_unique(model, items["item"].to_list(), cache)
    qemb = embed_unique(model, queries, cache)
    ids = items["item_id"].to_list()
    titles = [title_of(t) for t in items["item"].to_list()]
    lexical = head in model.lexical and model.uses_lexical
    dev = model.device
    it = torch.as_tensor(iemb, device=dev)
    num = torch.as_tensor(numeric(items), device=dev)
    mon = torch.as_tensor(month_features(np.full(items.height, month, dtype=np.int64)), device=dev)
    out: dict[str, list[str]] = {}
    kk = min(k, len(ids))
    for n, q in enumerate(queries):
        qv = torch.as_tensor(qemb[n], device=dev)
        if head == "similarity":
            s = it @ qv
        else:
            s = model.pair_outputs(qv, it, num, mon)[head]
            if lexical:
                raw = model.add_lexical({head: s.float().cpu().numpy()}, lexical_features(q, titles))[head]
                s = torch.as_tensor(raw)
        top = torch.topk(s.float(), kk).indices.cpu().numpy()
        out[q] = [ids[i] for i in top]
    return out


def catalogue_items(cat: pl.DataFrame, manifest: dict[str, Any] | None = None) -> pl.DataFrame:
    """item_id, ``pair`` item text (the recipe of the checkpoint whose ``manifest`` is given; None:
    the default) and numeric columns of a canonical catalogue: the text an index built from the
    same checkpoint embeds and stores, so eval's BM25 and the served ranker's read the same."""
    return catalogue_view(cat, PAIR, recipes_of(manifest))


def click_ranking_metrics(
    systems: dict[str, Callable[[list[str]], dict[str, list[str]]]],
    test: pl.DataFrame,
    per_click: dict[str, list[list[str]]] | None = None,
) -> dict[str, dict[str, float]]:
    """MAP@5 and recall@100 for each system over test clicks (one relevant item per click).

    ``systems`` rank per query; ``per_click`` holds systems' lists per test click (row order),
    for rankings that also depend on who searched.
    """
    queries = list(dict.fromkeys(test["query"].to_list()))
    rel = [[i] for i in test["item_id"].to_list()]
    every = {}
    for name, fn in systems.items():
        ranked = fn(queries)
        every[name] = [ranked.get(q, []) for q in test["query"].to_list()]
    every.update(per_click or {})
    return {
        name: {"map@5": M.map_at_k(rel, lists, 5), "recall@100": M.mean_recall_at_k(rel, lists, 100)}
        for name, lists in every.items()
    }


def click_log_split(
    events: pl.DataFrame, items: pl.DataFrame, split: SplitConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A click log cut by time (``split``), kept to the catalogue's items: (known clicks,
    history = train + val, test). The split is taken over every click, known or not."""
    ev = events.filter(pl.col("event_type") == "click").with_columns(pl.col("item_id").cast(pl.Utf8))
    ev = ev.with_columns(time_split(ev["timestamp"], split))
    known = ev.filter(pl.col("item_id").is_in(items["item_id"].implode()))
    return known, known.filter(pl.col("split") != "test"), known.filter(pl.col("split") == "test")


def fit_periods(train: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The training log cut in two by time for fitting the click blend: the validation split
    when it has one, else the newest tenth of the clicks."""
    if "split" in train.columns and (train["split"] == "val").any():
        return train.filter(pl.col("split") != "val"), train.filter(pl.col("split") == "val")
    ordered = train.sort("timestamp", maintain_order=True)
    cut = ordered.height - max(1, ordered.height // 10)
    return ordered.head(cut), ordered.tail(ordered.height - cut)


# -- the checkpoint report --------------------------------------------------------------------
def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    baselines: bool = True,
    max_rows: int | None = MAX_EVAL_ROWS,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    encoder_runtime: str = "torch",
) -> dict[str, Any]:
    """Every trained task on its held-out test split, per source, with baselines; the checkpoint's encoder
    runs on ``encoder_runtime`` (:mod:`shoprank.model.runtime`; the ONNX parity gate compares them)."""
    t0 = time.perf_counter()
    model, manifest = load_checkpoint(checkpoint, device, encoder_runtime=encoder_runtime)
    if "train_config" not in manifest:
        raise DataError(f"{checkpoint}: manifest has no train_config; pass --judgements or --clicks instead")
    cfg = DataConfig.of(manifest["train_config"])
    data = build_task_data(cfg, recipes=recipes_of(manifest))
    zs = load_model(None, encoder=model.config.encoder, device=device)[0] if baselines else None
    # weights are fixed from here on: embed each distinct text once per model
    caches = Caches(EmbeddingCache(model), EmbeddingCache(zs) if zs is not None else None)
    rows: list[dict[str, Any]] = []
    say = log or (lambda s: None)
    for task in cfg.tasks:
        if not model.is_trained(task):
            continue
        test_all, train_all = data.split(task, "test"), data.split(task, "train")
        for source in sorted(set(source_of(test_all).to_list())):
            test = _cap(test_all.filter(source_of(test_all) == source), max_rows, cfg.data_seed)
            train = train_all.filter(source_of(train_all) == source)
            say(f"eval {task}/{source}: {test.height} test rows")
            rows.extend(task_rows(model, zs, spec(task), source, test, train, caches))
        if task == "click":
            for source in cfg.tasks["click"].sources:
                frames = data.frames[source]
                ev, cat = frames.get("events"), frames.get("catalogue")
                if ev is None or cat is None or (ev["event_type"] == "impression").any():
                    continue  # MAP@5 is defined here for click-only logs (the Best Buy format)
                items = catalogue_items(cat, manifest)
                _, train, test = click_log_split(ev, items, cfg.split)
                say(f"eval click ranking/{source}: {test.height} test clicks, time split")
                res = click_ranking(model, zs, train, test, items, caches)
                for metric in ("map@5", "recall@100"):
                    rows.append(row("click", source, metric, **{s: v[metric] for s, v in res.items()}))
    metrics = {f"{r['task']}/{r['source']}/{r['metric']}": r.get("model", float("nan")) for r in rows}
    return {
        "checkpoint": str(checkpoint),
        "model_version": model_version(manifest),
        "trained_tasks": sorted(model.trained_tasks),
        "split": "test",
        "metrics": metrics,
        "table": rows,
        "seconds": time.perf_counter() - t0,
    }


def click_ranking(
    model: MultiTaskModel,
    zs: MultiTaskModel | None,
    train: pl.DataFrame,
    test: pl.DataFrame,
    items: pl.DataFrame,
    caches: Caches | None = None,
    blends: dict[str, BlendWeights] | None = None,
    lists: dict[str, list[list[str]]] | None = None,
) -> dict[str, dict[str, float]]:
    """Every click system's MAP@5 and recall@100; ``blends`` (when given) receives each learned blend's
    weights, ``lists`` each per-click system's top-100 lists (``test``'s row order)."""
    lookup = QueryLookup(train["query"].to_list(), train["item_id"].to_list())
    recent = QueryLookup(
        train["query"].to_list(),
        train["item_id"].to_list(),
        train["timestamp"].to_list(),
        half_life_days=LOOKUP_HALF_LIFE_DAYS,
        word_weight=LOOKUP_WORD_WEIGHT,
        neighbour_weight=LOOKUP_NEIGHBOUR_WEIGHT,
    )
    # The model reads the query as training and serving give it (lower case, spaces collapsed; the
    # click counters key it by its compact form whatever its spelling).
    norm = pl.col("query").map_elements(normalize_query, return_dtype=pl.Utf8)
    test = test.with_columns(norm)
    model_fn = month_ranker(model, items, caches and caches.model)
    # The model's ranking is per (query, month of the click): per click, not per query.
    keys = list(zip(test["query"].to_list(), click_months(test), strict=True))
    model_rank = model_fn(keys)
    per_click = {
        "model": [model_rank[key] for key in keys],
        "lookup+model": [blend(recent.scores(q), model_rank[(q, m)], MODEL_BLEND_WEIGHT, 100) for q, m in keys],
    }
    systems: dict[str, Callable[[list[str]], dict[str, list[str]]]] = {}
    systems["lookup"] = lambda qs: {q: back_off(lookup.rank(q, 100), lookup.popular(100), 100) for q in qs}
    systems["lookup_recency_words"] = lambda qs: {
        q: back_off(recent.rank(q, 100), recent.popular(100), 100) for q in qs
    }
    systems["popularity"] = lambda qs: {q: lookup.popular(100) for q in qs}
    # Not a system: each query's items ordered by the *test* period's own clicks, the best any
    # one list per query can do (a query's clicks spread over several items), to read MAP@5 by.
    ceiling = QueryLookup(test["query"].to_list(), test["item_id"].to_list())
    systems["ceiling"] = lambda qs: {q: ceiling.rank(q, 100) for q in qs}
    docs = items["item"].to_list()
    ids = items["item_id"].to_list()
    bm = BM25(docs)
    systems["bm25"] = lambda qs: {q: [ids[i] for i in np.argsort(-bm.scores(q), kind="stable")[:100]] for q in qs}
    if zs is not None:
        zs_rank: dict[str, list[str]] = {}

        def zs_fn(qs: list[str]) -> dict[str, list[str]]:
            zs_rank.update(rank_catalogue(zs, qs, items, head="similarity", cache=caches and caches.zero_shot))
            return zs_rank

        systems["zero_shot"] = zs_fn
        systems["lookup+zero_shot"] = lambda qs: {
            q: blend(recent.scores(q), zs_rank[q], MODEL_BLEND_WEIGHT, 100) for q in qs
        }
    # The learned blend (shoprank.eval.clickblend): weights fitted on the training log's newest
    # period counted from the rest, then counts from the whole training log. Each test click is
    # ranked from the clicks before it: the counters keep counting through the test period as a
    # live service's do (learned_blend; without the user's own earlier clicks: _no_user), or
    # stay as they were when it began (learned_blend_static; the lookups above are all static).
    # A log too small to fit the blend on leaves these rows out.
    history, later = fit_periods(train.with_columns(norm))
    for name, use_user, online in (
        ("learned_blend", True, True),
        ("learned_blend_no_user", False, True),
        ("learned_blend_static", True, False),
    ):
        try:
            fitted = ClickBlend(items, model_fn, use_user=use_user, online=online).fit(history, later)
        except ValueError:
            break
        per_click[name] = fitted.rank(train, test)
        if blends is not None:
            blends[name] = fitted.blend
    if lists is not None:
        lists.update(per_click)
    return click_ranking_metrics(systems, test, per_click)


def month_ranker(model: MultiTaskModel, items: pl.DataFrame, cache: EmbeddingCache | None = None) -> RankFn:
    """The model's top 100 of ``items`` per (query, month), computed once per key (:func:`rank_catalogue`)."""
    ranked: dict[RankKey, list[str]] = {}

    def rank(keys: list[RankKey]) -> dict[RankKey, list[str]]:
        by_month: dict[int, list[str]] = {}
        for q, m in dict.fromkeys(keys):
            if (q, m) not in ranked:
                by_month.setdefault(m, []).append(q)
        for m, qs in by_month.items():
            ranked.update({(q, m): r for q, r in rank_catalogue(model, qs, items, cache=cache, month=m).items()})
        return ranked

    return rank


# -- generic inputs ---------------------------------------------------------------------------
def _model(checkpoint: str | Path, device: str) -> MultiTaskModel:
    return load_checkpoint(checkpoint, device)[0]


@torch.inference_mode()
def evaluate_judgements(checkpoint: str | Path, path: str | Path, device: str = "cpu") -> dict[str, float]:
    """nDCG@10 per query (mean) and Spearman between the model's score and the label."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        df = pl.read_csv(path, infer_schema_length=10000, encoding="utf8-lossy")
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: cannot read CSV ({e})") from None
    missing = [c for c in ("query", "product_title", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; need query, product_title, label")
    try:
        label = df["label"].cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError:
        raise DataError(f"{path}: column 'label' must be numeric") from None
    desc = df["product_description"].to_list() if "product_description" in df.columns else [None] * df.height
    items = [item_text(t, d) for t, d in zip(df["product_title"].to_list(), desc, strict=True)]
    queries = [str(q or "") for q in df["query"].to_list()]
    model = _model(checkpoint, device)
    frame = pl.DataFrame(
        {
            "query": queries,
            "item": items,
            "price": [None] * df.height,
            "rating": [None] * df.height,
            "popularity": [0.0] * df.height,
            "month": [0] * df.height,
        },
        schema_overrides={"price": pl.Float64, "rating": pl.Float64, "month": pl.Int32},
    )
    if model.is_trained("relevance"):
        score, head = pair_raw(model, "relevance", frame), "relevance"
    else:
        score, head = (embed_unique(model, queries) * embed_unique(model, items)).sum(1), "similarity"
    y = label.to_numpy()
    return {
        "ndcg@10": M.mean_ndcg_at_k(np.asarray(queries), y, score, 10),
        "spearman": M.spearman(score, y),
        "pairs": float(df.height),
        "queries": float(len(set(queries))),
        "head": head,  # type: ignore[dict-item]
    }


def evaluate_clicks(
    checkpoint: str | Path,
    clicks: str | Path,
    catalogue: str | Path,
    device: str = "cpu",
    write_blend: bool = False,
    keep_lists: bool = False,
) -> dict[str, Any]:
    """MAP@5 and recall@100 on a click log in the Best Buy format against its catalogue.

    As in ``shoprank eval`` on Best Buy: the log is split by time (the checkpoint's split
    fractions, else 10% + 10%); the newest clicks are the test clicks, ranked with the earlier
    ones as history. ``map@5``/``recall@100`` are the learned click blend's (``system`` names
    it; ``lookup+model`` when the log is too small to fit the blend), every other system
    reports as ``<system>/map@5``; ``model_all_clicks/*`` ranks every click by the model alone.
    ``write_blend``: the fitted learned blend's weights go to the checkpoint's ``click_blend.json``
    (what a ranker serving this checkpoint with a store reads, see ``shoprank.serving.clicks``).
    ``keep_lists``: ``lists`` holds the learned blend's top 5 per test click, in the test clicks'
    order (:func:`click_log_split`'s), to compare with what a server returned (``shoprank replay``).
    """
    from shoprank.data import loaders

    cat_fmt = "bestbuy-products" if str(catalogue).endswith((".xml", ".zip")) else "canonical"
    cat = loaders.load(catalogue, cat_fmt).frames.get("catalogue")
    ev = loaders.load(clicks, "bestbuy-clicks").frames.get("events")
    if cat is None or ev is None:
        raise DataError(f"{clicks} / {catalogue}: need a click log and a product catalogue")
    model, manifest = load_checkpoint(checkpoint, device)
    items = catalogue_items(cat, manifest)
    caches = Caches(EmbeddingCache(model))
    split = SplitConfig.model_validate(manifest.get("train_config", {}).get("split", {}))
    known, history, test = click_log_split(ev, items, split)
    queries = [normalize_query(q) for q in known["query"].to_list()]
    keys = list(zip(queries, click_months(known), strict=True))
    ranked = month_ranker(model, items, caches.model)(keys)
    rel = [[i] for i in known["item_id"].to_list()]
    lists = [ranked[key] for key in keys]
    out: dict[str, Any] = {
        "clicks": float(known.height),
        "clicks_unknown_item": float((ev["event_type"] == "click").sum() - known.height),
        "queries": float(len(set(queries))),
        "model_all_clicks/map@5": M.map_at_k(rel, lists, 5),
        "model_all_clicks/recall@100": M.mean_recall_at_k(rel, lists, 100),
    }
    out.update({"test_clicks": float(test.height), "history_clicks": float(history.height)})
    if test.is_empty() or history.is_empty():
        raise DataError(f"{clicks}: {known.height} clicks on catalogue items are too few to split by time")
    blends: dict[str, BlendWeights] = {}
    per_click: dict[str, list[list[str]]] = {}
    res = click_ranking(model, None, history, test, items, caches, blends, per_click)
    if write_blend and "learned_blend" in blends:
        atomic_write_json(Path(checkpoint) / CLICK_BLEND_FILE, blends["learned_blend"].to_dict(), indent=1)
        out["blend_written"] = str(Path(checkpoint) / CLICK_BLEND_FILE)
    system = "learned_blend" if "learned_blend" in res else "lookup+model"
    out.update({"system": system, "map@5": res[system]["map@5"], "recall@100": res[system]["recall@100"]})
    for name, m in res.items():
        out.update({f"{name}/{k}": v for k, v in m.items()})
    if keep_lists and system in per_click:
        out["lists"] = [lst[:5] for lst in per_click[system]]
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    from shoprank.eval.report import markdown_table

    keys = ("task", "source", "metric", "split")
    systems = list(dict.fromkeys(k for r in rows for k in r if k not in keys))
    systems = ["model"] + [s for s in systems if s != "model"]
    split = ["split"] if any("split" in r for r in rows) else []
    return markdown_table(rows, ["task", "source", "metric", *split, *systems])


def clean(obj: Any) -> Any:
    """JSON-safe: NaN -> None."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj
