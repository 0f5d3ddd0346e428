"""Season accuracy on a checkpoint's own test items: eval vs campaign scoring vs the old campaign text.

    python bench/item_text_parity.py --checkpoint runs/reference/model [--json]

Rebuilds the checkpoint's season examples from its own train config and item text recipes (the
same deterministic split ``shoprank eval`` uses; the season task's sources, fashion for the
reference config) and, per source, on the test items:

- ``eval``: ``shoprank eval``'s season accuracy (its evaluator on the test rows' ``item`` text);
- ``campaign``: the campaign job's path: the items' catalogue rows validated as a campaign shard
  (``shoprank.campaign.source.read_shard``), the season head's argmax on the text
  ``CampaignScorer`` feeds it (the checkpoint's ``item`` text);
- ``campaign_pair_text``: the same head fed the ``pair`` text, what campaign scoring embedded
  for every head before issue 24.

Each on every test item (the task's split: by item id) and on the **title-disjoint** ones: test
items whose title (lower case, spaces collapsed) no train item of the source has, since a split by
item id puts near-twins on both sides and flatters every figure. Also the cost of the second text:
encoder seconds for the pair and item texts of the same items,
measured in this run (campaign scoring embeds both when a trained season head is used).
Writes ``bench/results/item_text_parity.{json,md}``.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SPEC = {"name": "item-text-parity", "months": [12, 1, 2], "themes": ["warm winter clothing"]}


def parity(checkpoint: Path, device: str = "cpu") -> dict[str, Any]:
    """Season accuracy per source of the checkpoint's season task, three ways, on its test items."""
    import numpy as np
    import polars as pl
    from shoprank.batch.embed import batch_texts
    from shoprank.campaign.scoring import CampaignScorer
    from shoprank.campaign.source import read_shard
    from shoprank.campaign.spec import parse_spec
    from shoprank.errors import DataError
    from shoprank.eval.runner import source_of
    from shoprank.eval.tasks import task_metrics
    from shoprank.model.checkpoint import load_checkpoint, model_version, read_manifest
    from shoprank.model.text import ITEM, MANIFEST_KEY, PAIR, recipes_of
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import build_task_data

    model, manifest = load_checkpoint(checkpoint, device)
    if not model.is_trained("season") or "train_config" not in manifest:
        raise DataError(f"{checkpoint}: needs a trained season head and the train config in its manifest")
    cfg = DataConfig.of(manifest["train_config"])
    cfg = cfg.model_copy(update={"tasks": {"season": cfg.tasks["season"]}})
    data = build_task_data(cfg, recipes=recipes_of(manifest))
    labels = data.label_maps["season"]
    if labels != model.label_maps.get("season"):
        raise DataError(f"rebuilt season classes {labels} != the checkpoint's {model.label_maps.get('season')}")
    scorer = CampaignScorer(parse_spec(SPEC).model_dump(mode="json"), checkpoint=str(checkpoint), device=device)
    test_all = data.split("season", "test")
    rows = []
    for source in sorted(set(source_of(test_all).to_list())):
        test = test_all.filter(source_of(test_all) == source)
        eval_acc = task_metrics(model, "season", test)["accuracy"]
        truth = dict(zip(test["item_id"].str.replace(f"^{source}:", "").to_list(),
                         [labels[int(i)] for i in test["label"].to_list()], strict=True))  # fmt: skip
        cat = data.frames[source]["catalogue"].with_columns(pl.col("item_id").cast(pl.Utf8))
        cat = cat.filter(pl.col("item_id").is_in(list(truth))).unique("item_id", keep="first", maintain_order=True)
        with tempfile.TemporaryDirectory() as tmp:
            cat.write_parquet(Path(tmp) / "c.parquet")
            shard = read_shard(str(Path(tmp) / "c.parquet"), "parquet", 0, 0, cat.height, {}, str(Path(tmp) / "q"))
        ok = shard.filter(np.array([s == "ok" for s in shard.column("_status").to_pylist()]))
        ids = ok.column("item_id").to_pylist()
        disjoint = title_disjoint(data.frames[source]["catalogue"], data.split("season", "train"), source)

        def accuracy(
            pred: list[str], keep: set[str] | None = None, ids: list[str] = ids, truth: dict[str, str] = truth
        ) -> float:
            pairs = [(p, i) for p, i in zip(pred, ids, strict=True) if keep is None or i in keep]
            return float(np.mean([p == truth[i] for p, i in pairs]))

        t0 = time.perf_counter()
        campaign_pred = scorer.season_predictions(ok)
        t1 = time.perf_counter()
        old_pred = scorer.season_predictions(ok, kind=PAIR)
        t2 = time.perf_counter()
        campaign, old = accuracy(campaign_pred), accuracy(old_pred)
        test_dis = test.filter(test["item_id"].str.replace(f"^{source}:", "").is_in(list(disjoint)))
        pair, item = batch_texts(ok, PAIR, scorer.recipes), batch_texts(ok, ITEM, scorer.recipes)
        rows.append({
            "source": source, "test_items": test.height, "campaign_items": ok.num_rows,
            "eval": eval_acc, "campaign": campaign, "campaign_pair_text": old,
            "campaign_minus_eval": campaign - eval_acc,
            "title_disjoint": {"test_items": test_dis.height,
                               "eval": task_metrics(model, "season", test_dis)["accuracy"],
                               "campaign": accuracy(campaign_pred, disjoint),
                               "campaign_pair_text": accuracy(old_pred, disjoint)},
            "texts_differ": float(np.mean([a != b for a, b in zip(pair, item, strict=True)])),
            "item_text_seconds": round(t1 - t0, 2), "pair_text_seconds": round(t2 - t1, 2),
            "example_pair_text": pair[0] if pair else "", "example_item_text": item[0] if item else "",
        })  # fmt: skip
    return {
        "checkpoint": str(checkpoint),
        "model_version": model_version(manifest),
        "season_kind": scorer.season_kind,
        # a checkpoint from before the recipes were stored gets today's defaults
        "recipes_from": "manifest" if MANIFEST_KEY in read_manifest(checkpoint) else "defaults (manifest has none)",
        "recipes": {k: r.to_dict() for k, r in scorer.recipes.items()},
        "rows": rows,
    }


def title_disjoint(cat: Any, train: Any, source: str) -> set[str]:
    """Item ids of ``cat`` whose normalised title no train item (of ``source``) has."""
    import polars as pl

    norm = pl.col("title").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    titles = cat.select(pl.col("item_id").cast(pl.Utf8), norm.alias("t"))
    train_ids = train["item_id"].str.replace(f"^{source}:", "")
    seen = set(titles.filter(pl.col("item_id").is_in(train_ids.implode()))["t"].to_list())
    return set(titles.filter(~pl.col("t").is_in(list(seen)))["item_id"].to_list())


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Item text parity: season accuracy on the checkpoint's test items",
        "",
        f"Checkpoint `{res['checkpoint']}` ({res['model_version']}); campaign scoring feeds the season head "
        f"the `{res['season_kind']}` text (item text recipes: {res['recipes_from']}). Command: "
        f"`python bench/item_text_parity.py --checkpoint {res['checkpoint']}`.",
        "",
        "| source | test items (split) | items | eval | campaign (item text) | campaign − eval "
        "| old campaign (pair text) | rows whose texts differ | encoder s item / pair text |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        d = r["title_disjoint"]
        lines += [
            f"| {r['source']} | all (split by item id) | {r['test_items']} | {r['eval']:.4f} | {r['campaign']:.4f} | "
            f"{r['campaign_minus_eval']:+.4f} | {r['campaign_pair_text']:.4f} | {r['texts_differ']:.0%} | "
            f"{r['item_text_seconds']} / {r['pair_text_seconds']} |",
            f"| {r['source']} | title-disjoint (no train item has the title) | {d['test_items']} | {d['eval']:.4f} | "
            f"{d['campaign']:.4f} | {d['campaign'] - d['eval']:+.4f} | {d['campaign_pair_text']:.4f} | | |",
        ]
    for r in res["rows"][:1]:
        lines += ["", f"Example ({r['source']}): item text `{r['example_item_text']}`; "
                  f"pair text `{r['example_pair_text']}`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where item_text_parity.{json,md} go")
    args = ap.parse_args(argv)
    from shoprank.files import atomic_write_json, atomic_write_text

    res = parity(args.checkpoint, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "item_text_parity.json", res, indent=1)
    md = markdown(res)
    atomic_write_text(args.out / "item_text_parity.md", md)
    print(json.dumps(res) if args.json else md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
