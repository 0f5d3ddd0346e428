"""Per-task examples built from canonical frames (``shoprank.data``), for training and evaluation.

Every task's examples share one flat schema (``EXAMPLE_SCHEMA``) so one collate function,
one Ray Data path and one sampler serve them all:

``query`` (empty for item-only tasks), ``item`` (item text; empty for intent), ``item_id``,
``group`` (the key used for splitting and per-query evaluation), ``price``, ``rating``,
``popularity``, ``month`` (1..12, 0 = none), ``label`` (class index, 0..1 grade, click 0/1 or
demand share) and ``split`` ("train" | "val" | "test").

Splits are deterministic: hashed by ``group`` (queries for ranking tasks; for item tasks the
normalised title, ``split.item_split: title``, or the item id, ``item``), or by time for click
logs, so ``shoprank eval`` rebuilds exactly the held-out rows; :func:`split_kind` names a task's
split for the eval report (docs/splits.md). ``item_text.attribute_dropout`` replaces that share of
the item tasks' training texts by the text without attributes (:func:`attribute_dropout`); ``distill``
blends the teacher's soft labels into the relevance and click training rows (``shoprank.tasks.soft_labels``).

Item texts come from :func:`shoprank.model.text.item_texts`, each task's kind
(``TaskSpec.text_kind``) by the recipes given to :func:`build_task_data` (a checkpoint's, see
``shoprank.model.text.recipes_of``; the defaults when none are given). ``TaskData.recipes`` records
them for the checkpoint manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from shoprank.data.splits import hash_split, time_cutoffs, time_split, title_key
from shoprank.errors import ConfigError, DataError
from shoprank.hashing import unit_hash
from shoprank.model.registry import CLASS_TASKS, TextKind, spec
from shoprank.model.text import (
    DEFAULT_RECIPES,
    ITEM,
    PAIR,
    Recipes,
    TextRecipe,
    item_texts,
    recipes_to_json,
    without_attributes,
)
from shoprank.tasks.config import DataConfig, SourceConfig, SplitConfig, TaskConfig
from shoprank.tasks.soft_labels import apply_soft_labels, distill_fingerprint, read_labels

EXAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "query": pl.Utf8(),
    "item": pl.Utf8(),
    "item_id": pl.Utf8(),
    "group": pl.Utf8(),
    "price": pl.Float64(),
    "rating": pl.Float64(),
    "popularity": pl.Float64(),
    "month": pl.Int32(),
    "label": pl.Float64(),
    "split": pl.Utf8(),
}
Frames = dict[str, pl.DataFrame]
__all__ = ["hash_split", "time_cutoffs", "time_split"]  # re-exported (shoprank.data.splits holds them)


# -- loading ------------------------------------------------------------------------------
def _frames_of(result: object) -> Frames:
    frames = getattr(result, "frames", result)
    if not isinstance(frames, dict):
        raise DataError(f"loader returned {type(result).__name__}, expected frames")
    return {k: v for k, v in frames.items() if isinstance(v, pl.DataFrame)}


def load_source(src: SourceConfig) -> Frames:
    """All canonical frames of one source (its parts' frames concatenated by kind)."""
    out: dict[str, list[pl.DataFrame]] = {}
    for part in src.all_parts():
        if part.format == "synthetic":
            from shoprank.data import synth

            frames = _frames_of(synth.generate(src.n_items, src.seed))
        else:
            from shoprank.data import loaders

            frames = _frames_of(loaders.load(part.path, part.format))
        for kind, df in frames.items():
            out.setdefault(kind, []).append(df)
    merged = {k: pl.concat(v, how="diagonal_relaxed") if len(v) > 1 else v[0] for k, v in out.items()}
    if src.max_rows:
        merged = {k: v.head(src.max_rows) for k, v in merged.items()}
    return merged


def fingerprint_source(src: SourceConfig, frames: Frames) -> dict[str, object]:
    """Data fingerprint for the manifest: file sizes + content hash, and frame row counts."""
    files = []
    for part in src.all_parts():
        if part.path and Path(part.path).is_file():
            h = hashlib.sha256(Path(part.path).read_bytes()).hexdigest()[:16]
            files.append({"path": Path(part.path).name, "format": part.format, "sha256": h})
        else:
            files.append({"format": part.format, "path": part.path, "n_items": src.n_items, "seed": src.seed})
    return {"files": files, "rows": {k: v.height for k, v in frames.items()}}


# -- helpers ------------------------------------------------------------------------------
def _col(df: pl.DataFrame, name: str, default: object = None) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(default)


def catalogue_view(
    cat: pl.DataFrame, kind: TextKind = PAIR, recipes: TextRecipe | Recipes | None = None
) -> pl.DataFrame:
    """item_id, ``kind`` item text (by ``recipes``; None: the defaults) and numeric feature columns
    of a catalogue frame, one row per item (its first)."""
    return pl.DataFrame(
        {
            "item_id": cat["item_id"].cast(pl.Utf8),
            "item": pl.Series(item_texts(cat, kind, recipes), dtype=pl.Utf8),
            "price": cat.select(_col(cat, "price").cast(pl.Float64)).to_series(),
            "rating": cat.select(_col(cat, "rating").cast(pl.Float64)).to_series(),
            "popularity": cat.select(_col(cat, "popularity", 0.0).cast(pl.Float64)).to_series(),
        }
    ).unique("item_id", keep="first", maintain_order=True)


def _view(cat: pl.DataFrame, task: str, recipes: Recipes) -> pl.DataFrame:
    """The catalogue view with the item text ``task``'s heads read."""
    kind = spec(task).text_kind
    assert kind is not None, task
    return catalogue_view(cat, kind, recipes)


def _finish(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """Cast to the example schema; prefix ids with the source name so sources never collide."""
    for name, dtype in EXAMPLE_SCHEMA.items():
        if name not in df.columns:
            default = {"month": 0, "label": 0.0}.get(name, "" if dtype == pl.Utf8() else None)
            df = df.with_columns(pl.lit(default).alias(name))
    df = df.select([pl.col(n).cast(t) for n, t in EXAMPLE_SCHEMA.items()])
    return df.with_columns(
        pl.concat_str([pl.lit(f"{source}:"), pl.col("item_id").fill_null("")]).alias("item_id"),
        pl.concat_str([pl.lit(f"{source}:"), pl.col("group").fill_null("")]).alias("group"),
        pl.col("query").fill_null(""),
        pl.col("item").fill_null(""),
    )


def _norm_query(s: pl.Expr) -> pl.Expr:
    return s.str.to_lowercase().str.strip_chars().str.replace_all(r"\s+", " ")


def _leaf(path: pl.Expr) -> pl.Expr:
    return path.str.split(">").list.last().str.strip_chars()


POSITIVE_EVENTS = ["click", "add_to_cart", "purchase"]  # a user chose the item (the click task's positives)


def _clicks(frames: Frames) -> pl.DataFrame | None:
    ev = frames.get("events")
    if ev is None or ev.is_empty():
        return None
    return ev.filter(pl.col("event_type").is_in(POSITIVE_EVENTS))


# -- builders (frames of one source -> examples of one task, with a ``split`` column) ------
def build_intent(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    q = frames.get("queries")
    rows = None
    if q is not None and "intent" in q.columns and q["intent"].drop_nulls().len() > 0:
        rows = q.filter(pl.col("intent").is_not_null()).select(pl.col("text").alias("query"), pl.col("intent"))
    else:
        clicks, cat = _clicks(frames), frames.get("catalogue")
        if clicks is not None and cat is not None and "category_path" in cat.columns:
            leaf = cat.select(pl.col("item_id").cast(pl.Utf8), _leaf(pl.col("category_path")).alias("intent"))
            rows = (
                clicks.select("query", pl.col("item_id").cast(pl.Utf8))
                .join(leaf.unique("item_id"), on="item_id", how="inner")
                .select("query", "intent")
            )
    if rows is None or rows.is_empty():
        return None
    rows = rows.with_columns(_norm_query(pl.col("query")).alias("query")).filter(pl.col("query") != "")
    # One label per query: its most frequent class.
    rows = (
        rows.group_by("query", "intent")
        .len()
        .sort(["query", "len", "intent"], descending=[False, True, False])
        .unique("query", keep="first", maintain_order=True)
    )
    return rows.with_columns(pl.col("intent").alias("class"), pl.col("query").alias("group")).with_columns(
        hash_split(rows["query"], sp, seed).alias("split")
    )


def build_retrieval(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    cat = frames.get("catalogue")
    if cat is None:
        return None
    view = _view(cat, "retrieval", recipes)
    parts = []
    j = frames.get("judgements")
    if j is not None and not j.is_empty():
        lo, hi = j["label"].min(), j["label"].max()
        thr = lo + 0.75 * (hi - lo) if hi > lo else lo
        parts.append(j.filter(pl.col("label") >= thr).select("query", pl.col("item_id").cast(pl.Utf8)))
    clicks = _clicks(frames)
    if clicks is not None:
        parts.append(clicks.select("query", pl.col("item_id").cast(pl.Utf8)))
    if not parts:
        return None
    pairs = pl.concat(parts).with_columns(_norm_query(pl.col("query")).alias("query")).unique(maintain_order=True)
    df = pairs.join(view, on="item_id", how="inner").filter(pl.col("query") != "")
    if df.is_empty():
        return None
    return df.with_columns(pl.col("query").alias("group"), pl.lit(1.0).alias("label")).with_columns(
        hash_split(df["query"], sp, seed).alias("split")
    )


def build_relevance(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    j, cat = frames.get("judgements"), frames.get("catalogue")
    if j is None or cat is None or j.is_empty():
        return None
    lo, hi = float(j["label"].min()), float(j["label"].max())
    span = (hi - lo) or 1.0
    df = (
        j.select("query", pl.col("item_id").cast(pl.Utf8), ((pl.col("label") - lo) / span).alias("label"))
        .join(_view(cat, "relevance", recipes), on="item_id", how="inner")
        .with_columns(_norm_query(pl.col("query")).alias("query"))
    )
    return df.with_columns(pl.col("query").alias("group")).with_columns(
        hash_split(df["query"], sp, seed).alias("split")
    )


def build_click(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    ev, cat = frames.get("events"), frames.get("catalogue")
    if ev is None or cat is None or ev.is_empty():
        return None
    view = _view(cat, "click", recipes)
    ev = ev.with_columns(_norm_query(pl.col("query")).alias("query"), pl.col("item_id").cast(pl.Utf8))
    ev = ev.with_columns(
        time_split(ev["timestamp"], sp) if ev["timestamp"].null_count() < ev.height else pl.lit("train").alias("split")
    )
    has_impr = (ev["event_type"] == "impression").any()
    clicks = ev.filter(pl.col("event_type").is_in(POSITIVE_EVENTS))
    pos = clicks.select("query", "item_id", "timestamp", "split", pl.lit(1.0).alias("label"))
    if has_impr:
        clicked = clicks.select("query", "item_id").unique()
        neg = (
            ev.filter(pl.col("event_type") == "impression")
            .join(clicked, on=["query", "item_id"], how="anti")
            .select("query", "item_id", "timestamp", "split", pl.lit(0.0).alias("label"))
        )
    else:  # negatives sampled from the catalogue, never an item clicked for that query
        rng = np.random.default_rng(seed)
        ids = view["item_id"].to_numpy()
        k = tc.negatives
        n = pos.height * k
        cand = ids[rng.integers(0, len(ids), size=n)] if n else np.array([], dtype=object)
        neg = pl.DataFrame(
            {
                "query": np.repeat(pos["query"].to_numpy(), k),
                "item_id": cand,
                "timestamp": np.repeat(pos["timestamp"].to_numpy(), k),
                "split": np.repeat(pos["split"].to_numpy(), k),
            },
            schema_overrides={"timestamp": pos.schema["timestamp"]},
        ).with_columns(pl.lit(0.0).alias("label"))
        neg = neg.join(pos.select("query", "item_id").unique(), on=["query", "item_id"], how="anti")
    df = pl.concat([pos, neg.select(pos.columns)]).join(view, on="item_id", how="inner")
    month = df["timestamp"].dt.month().fill_null(0) if "timestamp" in df.columns else 0
    return df.with_columns(pl.col("query").alias("group"), pl.Series("month", month).cast(pl.Int32))


TITLE_GROUP = "title:"  # the group prefix of item rows split by title (``split.item_split: title``)
BARE_COLUMN = "item_bare"  # item tasks' text without attributes, until _finish drops it


def _item_class_rows(
    cat: pl.DataFrame, task: str, column: pl.Expr, sp: SplitConfig, seed: int, recipes: Recipes
) -> pl.DataFrame:
    # The item text (kind "item") holds the item's attributes (colour, gender, usage, year): legitimate
    # inputs for item tasks; the attributes that *are* labels are left out by the recipe.
    view = _view(cat, task, recipes)
    kind = spec(task).text_kind or ITEM
    key = title_key(_col(cat, "title", ""))
    labels = cat.select(
        pl.col("item_id").cast(pl.Utf8),
        column.alias("class"),
        pl.when(key != "").then(pl.lit(TITLE_GROUP) + key).otherwise(pl.col("item_id").cast(pl.Utf8)).alias("tkey"),
        pl.Series(BARE_COLUMN, item_texts(cat, kind, without_attributes(recipes[kind])), dtype=pl.Utf8),
    )
    df = view.join(labels.unique("item_id"), on="item_id", how="inner").filter(pl.col("class").is_not_null())
    group = pl.col("item_id") if sp.item_split == "item" else pl.col("tkey")
    df = df.with_columns(group.alias("group")).drop("tkey")
    return df.with_columns(hash_split(df["group"], sp, seed).alias("split"))


def attribute_dropout(df: pl.DataFrame, rate: float, seed: int) -> pl.DataFrame:
    """Training rows' ``item`` replaced by their text without attributes (``BARE_COLUMN``) for a
    ``rate`` share of items, chosen by a stable hash of the item id (the same rows in every process)."""
    if rate <= 0.0 or BARE_COLUMN not in df.columns:
        return df
    ids = df["item_id"].cast(pl.Utf8).fill_null("")
    drop = pl.Series([unit_hash(f"attribute-dropout:{k}", seed, "little") < rate for k in ids.to_list()])
    drop = drop & (df["split"] == "train")
    return df.with_columns(pl.when(drop).then(pl.col(BARE_COLUMN)).otherwise(pl.col("item")).alias("item"))


def split_kind(task: str, df: pl.DataFrame | None = None) -> str:
    """Which split a task's rows come from: "query" (hashed by normalised query: no test query was
    trained on), "time" (click logs: test is the newest slice), "title" (items hashed by normalised
    title; demand's items are their descriptions) or "item" (items hashed by id: a random split).
    Item tasks tell title from item by ``df``'s groups (their split key)."""
    if task == "click":
        return "time"
    if task in ("intent", "retrieval", "relevance"):
        return "query"
    if task == "demand" or df is None or df.is_empty():
        return "title"
    # groups are "<source>:<key>" (_finish); a title split's keys start with TITLE_GROUP
    return "title" if df["group"].str.contains(f"^[^:]*:{TITLE_GROUP}").any() else "item"


def build_category(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    cat = frames.get("catalogue")
    if cat is None or "category_path" not in cat.columns or cat["category_path"].drop_nulls().len() == 0:
        return None
    cat = cat.filter(pl.col("category_path") != "")
    return _item_class_rows(cat, "category", _leaf(pl.col("category_path")), sp, seed, recipes)


def build_season(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    cat = frames.get("catalogue")
    if cat is None or "season" not in cat.columns or cat["season"].drop_nulls().len() == 0:
        return None
    return _item_class_rows(cat, "season", pl.col("season").str.to_lowercase(), sp, seed, recipes)


def demand_table(tx: pl.DataFrame, min_lines: int = 5) -> pl.DataFrame:
    """Monthly demand share per item: item (description), month 1..12, share, price, total."""
    tx = tx.filter((pl.col("quantity") > 0) & pl.col("description").is_not_null() & pl.col("timestamp").is_not_null())
    tx = tx.with_columns(
        pl.col("description").str.strip_chars().alias("item"), pl.col("timestamp").dt.month().alias("month")
    )
    tx = tx.filter(pl.col("item") != "")
    items = (
        tx.group_by("item")
        .agg(
            pl.len().alias("lines"),
            pl.col("quantity").sum().alias("total"),
            pl.col("unit_price").median().alias("price"),
        )
        .filter(pl.col("lines") >= min_lines)
    )
    monthly = tx.group_by("item", "month").agg(pl.col("quantity").sum().alias("qty"))
    grid = items.select("item").join(
        pl.DataFrame({"month": list(range(1, 13))}, schema={"month": pl.Int8}), how="cross"
    )
    df = (
        grid.join(monthly.with_columns(pl.col("month").cast(pl.Int8)), on=["item", "month"], how="left")
        .join(items, on="item")
        .with_columns((pl.col("qty").fill_null(0) / pl.col("total")).alias("label"))
    )
    return df.sort("item", "month")


def build_demand(
    frames: Frames, tc: TaskConfig, sp: SplitConfig, seed: int, recipes: Recipes = DEFAULT_RECIPES
) -> pl.DataFrame | None:
    tx = frames.get("transactions")
    if tx is None or tx.is_empty():
        return None
    df = demand_table(tx)
    if df.is_empty():
        return None
    df = df.with_columns(
        pl.col("item").alias("item_id"),
        pl.col("item").alias("group"),
        pl.lit(None, dtype=pl.Float64).alias("rating"),
        pl.col("total").cast(pl.Float64).alias("popularity"),
    )
    return df.with_columns(hash_split(df["item"], sp, seed).alias("split"))


BUILDERS: dict[str, Callable[[Frames, TaskConfig, SplitConfig, int, Recipes], pl.DataFrame | None]] = {
    "intent": build_intent,
    "retrieval": build_retrieval,
    "relevance": build_relevance,
    "click": build_click,
    "category": build_category,
    "season": build_season,
    "demand": build_demand,
}


@dataclass
class TaskData:
    """Examples per task (EXAMPLE_SCHEMA, with splits), label maps and source fingerprints."""

    examples: dict[str, pl.DataFrame]
    label_maps: dict[str, list[str]] = field(default_factory=dict)
    fingerprints: dict[str, object] = field(default_factory=dict)
    frames: dict[str, Frames] = field(default_factory=dict)  # per source, for evaluation
    recipes: Recipes = field(default_factory=lambda: dict(DEFAULT_RECIPES))  # the item texts' (shoprank.model.text)

    def item_text_manifest(self) -> dict[str, object]:
        """The recipes as the checkpoint manifest records them (``shoprank.model.text.MANIFEST_KEY``)."""
        return recipes_to_json(self.recipes)

    def split(self, task: str, name: str) -> pl.DataFrame:
        return self.examples[task].filter(pl.col("split") == name)

    def sizes(self) -> dict[str, dict[str, int]]:
        return {
            t: {s: int((df["split"] == s).sum()) for s in ("train", "val", "test")} for t, df in self.examples.items()
        }


def _label_map(train_classes: pl.Series, tc: TaskConfig) -> list[str]:
    counts = train_classes.value_counts(sort=True, name="n")
    counts = counts.filter(pl.col("n") >= tc.min_class_count).sort(["n", train_classes.name], descending=[True, False])
    return [str(c) for c in counts[train_classes.name].head(tc.max_classes).to_list()]


def build_task_data(
    cfg: DataConfig, frames_by_source: dict[str, Frames] | None = None, recipes: Recipes | None = None
) -> TaskData:
    """Load each source once and build every configured task's examples, item texts by ``recipes``
    (a checkpoint's: ``shoprank.model.text.recipes_of(manifest)``; None: the defaults)."""
    recipes = dict(recipes or DEFAULT_RECIPES)
    frames_by_source = dict(frames_by_source or {})
    fingerprints: dict[str, object] = {}
    for name in sorted({s for t in cfg.tasks.values() for s in t.sources}):
        if name not in frames_by_source:
            frames_by_source[name] = load_source(cfg.sources[name])
        fingerprints[name] = fingerprint_source(cfg.sources[name], frames_by_source[name])
    examples: dict[str, pl.DataFrame] = {}
    label_maps: dict[str, list[str]] = {}
    for task, tc in cfg.tasks.items():
        parts = []
        for src in tc.sources:
            df = BUILDERS[task](frames_by_source[src], tc, cfg.split, cfg.data_seed, recipes)
            if df is None or df.is_empty():
                continue
            df = attribute_dropout(df, cfg.item_text.attribute_dropout, cfg.data_seed)
            if task in CLASS_TASKS:
                df = df.with_columns(pl.col("class").cast(pl.Utf8))
                parts.append(_finish(df, src).with_columns(df["class"].alias("class")))
            else:
                parts.append(_finish(df, src))
        if not parts:
            raise ConfigError(f"tasks.{task}: none of its sources {tc.sources} has data for this task")
        # A fixed row order: joins and unique() do not keep one, and samples (max_examples,
        # validation subsets, eval caps) must pick the same rows in every process.
        df = pl.concat(parts).sort(["split", "group", "item_id", "query", "month", "label"])
        if cfg.distill is not None and task in cfg.distill.tasks:  # the teacher's soft labels (training rows)
            df, counts = apply_soft_labels(df, read_labels(cfg.distill.labels, task), cfg.distill.alpha)
            fingerprints.setdefault("distill", {"labels": distill_fingerprint(cfg.distill.labels)})[task] = counts
        if task in CLASS_TASKS:
            classes = _label_map(df.filter(pl.col("split") == "train")["class"], tc)
            if len(classes) < 2:
                raise ConfigError(f"tasks.{task}: fewer than 2 classes with >= {tc.min_class_count} training examples")
            index = {c: i for i, c in enumerate(classes)}
            df = df.filter(pl.col("class").is_in(classes)).with_columns(
                pl.col("class").replace_strict(index, return_dtype=pl.Float64).alias("label")
            )
            df = df.drop("class")
            label_maps[task] = classes
        if tc.max_examples:
            train = df.filter(pl.col("split") == "train")
            if train.height > tc.max_examples:
                train = train.sample(tc.max_examples, seed=cfg.seed)
            df = pl.concat([train, df.filter(pl.col("split") != "train")])
        examples[task] = df
    return TaskData(examples, label_maps, fingerprints, frames_by_source, recipes)


def val_frame(data: TaskData, task: str, cfg: DataConfig) -> pl.DataFrame:
    """A task's validation examples, capped at ``split.max_val_examples`` (a fixed sample per data seed)."""
    df = data.split(task, "val")
    if df.height > cfg.split.max_val_examples:
        df = df.sample(cfg.split.max_val_examples, seed=cfg.data_seed)
    return df
