"""Teacher labelling for distillation: the cross-encoder scores training pairs and mined hard negatives.

    shoprank distill-labels --config configs/distill.yaml     (python -m shoprank.train.distill as a Ray job)

For each task in ``distill.tasks`` (``relevance``: Home Depot judged pairs; ``click``: Best Buy clicks and
their sampled negatives), on the config's sources, split and seed (``build_task_data``, the rows
``shoprank train`` builds):

1. **Training queries only.** The queries are drawn from the task's ``train`` rows (Home Depot: the
   query-hash split, so no validation or test query; Best Buy: the time split's training period, so no
   click of the validation or test period), up to ``distill.max_queries`` of them by a stable hash.
2. **Pairs**: every distinct (query, item) training row of those queries.
3. **Hard negatives**: the miner bi-encoder (``distill.miner``) embeds the queries and the source's
   catalogue and retrieves the ``search_k`` nearest items by cosine (what the served ANN retrieval does);
   the first ``hard_negatives`` not labelled for the query (not judged, not clicked, not a sampled
   negative) are kept, with the item's features and the query's month.
4. The teacher (``distill.teacher``, ``CrossEncoder.score``, batched in process: the scoring every other
   cross-encoder path uses) scores each row on the task's head.

Writes ``distill.labels/<task>.parquet`` atomically, then ``manifest.json`` (``shoprank.tasks.soft_labels``):
the teacher's and miner's weights hashes, the sources' fingerprints, the split and seed, the settings and
counts. A task whose file was written from the same inputs is not redone, so a killed run resumes by
task and a rerun costs nothing. Every row is checked to be a training row before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.errors import ConfigError, DataError, ShoprankError
from shoprank.files import atomic_path, atomic_write_json
from shoprank.hashing import unit_hash
from shoprank.tasks.config import DataConfig, DistillConfig
from shoprank.tasks.examples import EXAMPLE_SCHEMA, TaskData, build_task_data, catalogue_view, split_kind
from shoprank.tasks.soft_labels import EXTRA_COLUMNS, FORMAT, MANIFEST, labels_path

PAIR_KEYS = ["query", "item_id"]


def sample_queries(groups: pl.Series, max_queries: int | None, seed: int) -> list[str]:
    """Up to ``max_queries`` distinct groups (source:query), the same ones in every run (a stable hash order)."""
    keys = sorted(set(groups.to_list()))
    if max_queries is not None and len(keys) > max_queries:
        keys = sorted(keys, key=lambda k: unit_hash(f"distill:{k}", seed, "little"))[:max_queries]
    return keys


def candidates(
    data: TaskData, sources: list[str], keep: pl.Series, max_items: int | None = None, seed: int = 0
) -> pl.DataFrame:
    """The catalogue items a query may retrieve: each source's ``pair`` text and features, ids as the
    examples spell them (``source:item_id``), with ``source``; with ``max_items``, per source the items in
    ``keep`` (the sampled queries' labelled items) plus a stable hash sample of the others up to that many."""
    parts = []
    for src in sources:
        cat = data.frames.get(src, {}).get("catalogue")
        if cat is None or cat.is_empty():
            continue
        view = catalogue_view(cat, "pair", data.recipes)
        view = view.with_columns((pl.lit(f"{src}:") + pl.col("item_id")).alias("item_id"), pl.lit(src).alias("source"))
        if max_items is not None and view.height > max_items:
            kept = view["item_id"].is_in(keep.implode())
            rank = pl.Series([unit_hash(f"distill-item:{i}", seed, "little") for i in view["item_id"].to_list()])
            others = view.filter(~kept).with_columns(rank.filter(~kept).alias("_r")).sort("_r").drop("_r")
            view = pl.concat([view.filter(kept), others.head(max(0, max_items - int(kept.sum())))])
        parts.append(view)
    if not parts:
        raise DataError(f"no catalogue in sources {sources} to mine hard negatives from")
    return pl.concat(parts)


def mine_hard_negatives(
    miner: Any, train: pl.DataFrame, items: pl.DataFrame, k: int, search_k: int, log: Any = print
) -> pl.DataFrame:
    """For each query of ``train`` (training rows of the sampled queries), the first ``k`` of the miner's
    ``search_k`` nearest catalogue items (same source) that have no training row for that query; as
    example rows (the query's group and most frequent month, the item's text and features)."""
    if k == 0 or train.is_empty():
        return pl.DataFrame(schema=EXAMPLE_SCHEMA)
    per_query = train.group_by("group", "query").agg(
        pl.col("item_id").unique().alias("labelled"), pl.col("month").mode().first().alias("month")
    ).sort("group")  # fmt: skip
    t0 = time.perf_counter()
    out = []
    for src, rows in per_query.group_by(pl.col("group").str.split(":").list.first(), maintain_order=True):
        pool = items.filter(pl.col("source") == src[0])
        if pool.is_empty():
            continue
        item_emb = miner.embed(pool["item"].to_list(), batch_size=256)
        query_emb = miner.embed(rows["query"].to_list(), batch_size=256)
        depth = min(search_k, pool.height)
        sims = query_emb @ item_emb.T
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        ids = pool["item_id"].to_numpy()
        picked: list[tuple[int, int]] = []
        for r, (labelled, cand) in enumerate(zip(rows["labelled"].to_list(), top, strict=True)):
            order = cand[np.argsort(-sims[r, cand], kind="stable")]
            seen = set(labelled)
            picked.extend((r, c) for c in [c for c in order if ids[c] not in seen][:k])
        if not picked:
            continue
        r_idx, c_idx = (np.asarray(x) for x in zip(*picked, strict=True))
        q = rows[r_idx.tolist()].select("query", "group", "month")
        it = pool[c_idx.tolist()].select("item_id", "item", "price", "rating", "popularity")
        out.append(pl.concat([q, it], how="horizontal"))
        log(f"  mined {len(picked)} hard negatives for {rows.height} {src[0]} queries "
            f"({pool.height} items, {time.perf_counter() - t0:.0f}s)")  # fmt: skip
    if not out:
        return pl.DataFrame(schema=EXAMPLE_SCHEMA)
    df = pl.concat(out).with_columns(pl.lit(0.0).alias("label"), pl.lit("train").alias("split"))
    return df.select([pl.col(n).cast(t) for n, t in EXAMPLE_SCHEMA.items()])


def teacher_rows(teacher: Any, task: str, rows: pl.DataFrame, batch_size: int) -> pl.DataFrame:
    """``rows`` with the teacher's ``teacher_logit`` (its raw head output) and ``teacher`` (the student head's
    target: the relevance grade 0..1 as it is; the click logit as a probability)."""
    raw = teacher.score(rows["query"].to_list(), rows["item"].to_list(), batch_size=batch_size)[task].astype(np.float64)
    if task == "relevance":  # the cross-encoder returns its sigmoid; its logit for the record
        prob = raw
        logit = np.log(np.clip(raw, 1e-7, 1 - 1e-7) / np.clip(1 - raw, 1e-7, 1))
    else:
        logit, prob = raw, 1.0 / (1.0 + np.exp(-raw))
    return rows.with_columns(pl.Series("teacher", prob), pl.Series("teacher_logit", logit))


def check_training_rows(rows: pl.DataFrame, train: pl.DataFrame, held_out: pl.DataFrame, task: str) -> None:
    """DataError unless every pair is a training row, every query has training rows, and (query-split tasks)
    no query is a validation or test query."""
    pairs = rows.filter(pl.col("origin") == "pair")
    bad = pairs.join(train.select(PAIR_KEYS).unique(), on=PAIR_KEYS, how="anti").height
    bad += rows.filter(~pl.col("group").is_in(train["group"].unique().implode())).height
    if (
        split_kind(task) == "query"
    ):  # (click is split by time: a training query may search again, its later clicks held out)
        bad += rows.filter(pl.col("group").is_in(held_out["group"].unique().implode())).height
    if bad:
        raise DataError(f"{task}: {bad} soft-label row(s) are not training rows; nothing written")


def input_key(d: DistillConfig, task: str, teacher_sha: str, miner_sha: str, data: TaskData, cfg: DataConfig) -> str:
    """What a task's labels depend on, as a string: equal keys, equal files."""
    return json.dumps(
        {"task": task, "teacher": teacher_sha, "miner": miner_sha, "split": cfg.split.model_dump(mode="json"),
         "seed": cfg.data_seed, "task_config": cfg.tasks[task].model_dump(mode="json"),
         "sources": {s: data.fingerprints.get(s) for s in cfg.tasks[task].sources},
         "settings": d.model_dump(mode="json", include={"hard_negatives", "search_k", "max_queries", "max_items"})},
        sort_keys=True, default=str,
    )  # fmt: skip


def label(cfg: DataConfig, *, force: bool = False, log: Any = print) -> dict[str, Any]:
    """Write the soft labels of ``cfg.distill`` (see the module docstring); return the manifest."""
    from shoprank.model.checkpoint import load_checkpoint
    from shoprank.model.cross_encoder import cross_version, load_cross_encoder

    if cfg.distill is None:
        raise ConfigError("distill: the config has no distill block (labels, teacher, miner)")
    d = cfg.distill
    t0 = time.perf_counter()
    out = Path(d.labels)
    out.mkdir(parents=True, exist_ok=True)
    teacher, t_manifest = load_cross_encoder(d.teacher)
    miner, m_manifest = load_checkpoint(d.miner)
    base = cfg.model_copy(update={"distill": None, "tasks": {t: cfg.tasks[t] for t in d.tasks}})
    data = build_task_data(base)  # exactly the rows `shoprank train` builds (default item text recipes)
    old_path = out / MANIFEST
    old = json.loads(old_path.read_text()) if old_path.is_file() else {}
    tasks: dict[str, Any] = {}
    for task in d.tasks:
        key = input_key(d, task, t_manifest["weights_sha256"], m_manifest["weights_sha256"], data, base)
        prev = (old.get("tasks") or {}).get(task) or {}
        if not force and prev.get("input_key") == key and labels_path(out, task).is_file():
            log(f"{task}: soft labels up to date ({prev.get('rows')} rows), not redone")
            tasks[task] = prev
            continue
        t1 = time.perf_counter()
        df = data.examples[task]
        train, held_out = df.filter(pl.col("split") == "train"), df.filter(pl.col("split") != "train")
        queries = sample_queries(train["group"], d.max_queries, base.data_seed)
        train = train.filter(pl.col("group").is_in(queries))
        pairs = train.unique(PAIR_KEYS, keep="first", maintain_order=True).with_columns(pl.lit("pair").alias("origin"))
        pool = candidates(data, cfg.tasks[task].sources, train["item_id"], d.max_items, base.data_seed)
        negs = mine_hard_negatives(miner, train, pool, d.hard_negatives, d.search_k, log)
        negs = negs.with_columns(pl.lit("hard_negative").alias("origin"))
        rows = pl.concat([pairs.select(*EXAMPLE_SCHEMA, "origin"), negs.select(*EXAMPLE_SCHEMA, "origin")])
        check_training_rows(rows, df.filter(pl.col("split") == "train"), held_out, task)
        log(f"{task}: teacher scoring {rows.height} pairs ({pairs.height} training pairs, {negs.height} hard "
            f"negatives) of {len(queries)} training queries")  # fmt: skip
        rows = teacher_rows(teacher, task, rows, d.batch_size)
        rows = rows.select(*EXAMPLE_SCHEMA, *EXTRA_COLUMNS).cast(EXTRA_COLUMNS)  # type: ignore[arg-type]
        with atomic_path(labels_path(out, task)) as tmp:
            rows.write_parquet(tmp)
        by_origin = {o: int((rows["origin"] == o).sum()) for o in ("pair", "hard_negative")}
        tasks[task] = {"rows": rows.height, "by_origin": by_origin, "queries": len(queries),
                       "sources": cfg.tasks[task].sources, "split": "train", "input_key": key,
                       "teacher_mean": {o: float(rows.filter(pl.col("origin") == o)["teacher"].mean() or 0.0)
                                        for o in by_origin},
                       "seconds": round(time.perf_counter() - t1, 1)}  # fmt: skip
        log(f"{task}: {rows.height} soft labels in {tasks[task]['seconds']}s")
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "teacher": {"path": str(d.teacher), "version": cross_version(t_manifest),
                    "weights_sha256": t_manifest["weights_sha256"]},
        "miner": {"path": str(d.miner), "weights_sha256": m_manifest["weights_sha256"]},
        "split": {"rows": "train", "config": base.split.model_dump(mode="json"), "seed": base.data_seed,
                  "kinds": {"relevance": "query", "click": "time"}},
        "sources": {s: data.fingerprints.get(s) for s in sorted({s for t in d.tasks for s in cfg.tasks[t].sources})},
        "settings": d.model_dump(mode="json", exclude={"labels", "teacher", "miner"}),
        "targets": {"relevance": "teacher relevance grade (0..1)", "click": "teacher click probability"},
        "tasks": tasks,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    atomic_write_json(old_path, manifest, indent=2, default=str)
    return manifest


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m shoprank.train.distill", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a training YAML with a distill block (configs/distill.yaml)")
    ap.add_argument("--force", action="store_true", help="redo every task even if its labels are up to date")
    return ap


def main(argv: list[str] | None = None) -> int:
    from shoprank.train.config import load_config

    args = build_arg_parser().parse_args(argv)
    try:
        manifest = label(load_config(args.config), force=args.force)
    except ShoprankError as e:
        print(f"shoprank.train.distill: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({t: {k: v[k] for k in ("rows", "by_origin", "queries")} for t, v in manifest["tasks"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
