"""Item-task accuracy on title-disjoint items and on titles alone (issue 23, item 5).

    flock /tmp/shoprank-ray.lock .venv/bin/python bench/title_disjoint.py train     # the two small runs
    flock /tmp/shoprank-ray.lock .venv/bin/python bench/title_disjoint.py report    # table -> bench/results

``train`` trains small MiniLM runs on the fashion catalogue only (season + article type, the
reference model's settings, 300 steps of 32 on one worker), all on the **title-disjoint** split
(``split.item_split: title``): ``title`` without and ``title+dropout`` with
``item_text.attribute_dropout: 0.3``, then the rate at 0.5 and 0.3 with twice the steps (RUNS).
Each goes to ``runs/title_disjoint/<name>`` (skipped when its model is there). ``report``
evaluates them and the reference checkpoint (trained on the random item-id
split) with ``shoprank eval``'s item rows (``shoprank.eval.task_report``) on the fashion test items:

- ``accuracy``: the run's own test split (the reference: random by item id; the runs: by title);
- ``unseen titles``: a random split's test items whose normalised title no training item has;
- ``titles only``: the same test items, their text cut to the title (no attributes).

It prints the table and writes ``bench/results/title_disjoint.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
RUNS_DIR = REPO / "runs" / "title_disjoint"
REFERENCE = REPO / "runs" / "reference" / "model"
TASKS = ("season", "category")
SOURCE = "fashion"
DROPOUT = 0.3

BASE: dict[str, Any] = {
    "model": {"encoder": "minilm", "max_length": 32, "hidden": 256, "architecture": "shared_bottom",
              "freeze_layers": 3},
    "sources": {SOURCE: {"format": "fashion", "path": "../shared/data/fashion/styles.csv"}},
    "tasks": {"category": {"sources": [SOURCE], "sample_weight": 1.5},
              "season": {"sources": [SOURCE], "sample_weight": 2.0}},
    "weighting": "fixed", "schedule": "weighted", "epochs": 3, "steps_per_epoch": 100, "batch_size": 32,
    "lr": 1.0e-4, "head_lr": 2.0e-3, "warmup_steps": 30,
    "early_stopping": {"metric": "val_score", "mode": "max", "patience": 2},
    "split": {"val_fraction": 0.1, "test_fraction": 0.1, "max_val_examples": 250, "item_split": "title"},
    "head_refit": {"enabled": True, "max_examples": 4000, "steps": 300},
    "num_workers": 1, "use_gpu": "auto", "seed": 0,
}  # fmt: skip
RUNS: dict[str, dict[str, Any]] = {  # name -> overrides of BASE
    "title": {},
    "title+dropout": {"item_text": {"attribute_dropout": DROPOUT}},
    "title+dropout0.5": {"item_text": {"attribute_dropout": 0.5}},
    "title+dropout x2 steps": {"item_text": {"attribute_dropout": DROPOUT}, "epochs": 6},
}


def run_dir(name: str) -> Path:
    return RUNS_DIR / name.replace("+", "_").replace(" ", "_")


def train(names: list[str]) -> None:
    """Train each run (its config written beside it) with ``shoprank train``; skip a finished one."""
    import yaml

    for name in names:
        out = run_dir(name)
        if (out / "model" / "manifest.json").exists():
            print(f"{name}: {out / 'model'} exists, skipped", flush=True)
            continue
        out.mkdir(parents=True, exist_ok=True)
        cfg = {**BASE, **RUNS[name]}
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        cmd = [str(REPO / ".venv" / "bin" / "shoprank"), "train", "--config", str(out / "config.yaml"), "--out",
               str(out)]  # fmt: skip
        print(f"{name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        with (out / "train.log").open("w") as log:
            subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
        print(f"{name}: trained in {time.perf_counter() - t0:.0f}s", flush=True)


def item_rows(checkpoint: Path, device: str = "cpu") -> dict[str, Any]:
    """``shoprank eval``'s rows of the item tasks on the fashion test items of ``checkpoint``'s own split."""
    import polars as pl
    from shoprank.eval.runner import source_of
    from shoprank.eval.task_report import Caches, task_rows
    from shoprank.model.checkpoint import load_checkpoint, model_version
    from shoprank.model.embeddings import EmbeddingCache
    from shoprank.model.registry import spec
    from shoprank.model.text import recipes_of
    from shoprank.tasks.config import DataConfig
    from shoprank.tasks.examples import build_task_data

    model, manifest = load_checkpoint(checkpoint, device)
    full = DataConfig.of(manifest["train_config"])
    # the item tasks on the fashion source alone; labels are mapped back to the checkpoint's classes
    tasks = {t: full.tasks[t].model_copy(update={"sources": [SOURCE]}) for t in TASKS if model.is_trained(t)}
    cfg = full.model_copy(update={"tasks": tasks, "sources": {SOURCE: full.sources[SOURCE]}})
    data = build_task_data(cfg, recipes=recipes_of(manifest))
    caches = Caches(EmbeddingCache(model))
    rows: list[dict[str, Any]] = []
    for task in tasks:
        names, classes = data.label_maps[task], model.label_maps[task]
        index = {c: i for i, c in enumerate(classes)}
        remap = [float(index.get(n, -1)) for n in names]

        def own(df: pl.DataFrame, remap: list[float] = remap) -> pl.DataFrame:
            df = df.filter(source_of(df) == SOURCE)
            df = df.with_columns(pl.col("label").cast(pl.Int64).replace_strict(list(range(len(remap))), remap))
            return df.filter(pl.col("label") >= 0)

        rows += task_rows(model, None, spec(task), SOURCE, own(data.split(task, "test")),
                          own(data.split(task, "train")), caches)  # fmt: skip
    return {"checkpoint": str(checkpoint), "model_version": model_version(manifest),
            "item_split": cfg.split.item_split, "attribute_dropout": cfg.item_text.attribute_dropout,
            "rows": rows}  # fmt: skip


def report(reference: Path | None, device: str = "cpu") -> dict[str, Any]:
    """Every available checkpoint's item rows, by name."""
    ckpts = {"reference (random item split)": reference} if reference and reference.exists() else {}
    ckpts.update({f"{n} (title split)": run_dir(n) / "model" for n in RUNS if (run_dir(n) / "model").exists()})
    out = {}
    for name, path in ckpts.items():
        t0 = time.perf_counter()
        out[name] = item_rows(path, device)
        print(f"{name}: evaluated in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return out


def markdown(res: dict[str, Any]) -> str:
    def cell(rows: list[dict[str, Any]], task: str, metric: str) -> str:
        r = next((r for r in rows if r["task"] == task and r["metric"] == metric), None)
        return "–" if r is None else f"{r['model']:.4f} (majority {r['majority']:.2f}; split `{r['split']}`)"

    lines = [
        "| checkpoint | task | accuracy on its test split | unseen titles (random split) | titles only |",
        "|---|---|---|---|---|",
    ]
    for name, r in res.items():
        for task in TASKS:
            label = "article type" if task == "category" else task
            lines.append(
                f"| {name} | {label} | {cell(r['rows'], task, 'accuracy')} | "
                f"{cell(r['rows'], task, 'accuracy_unseen_titles')} | {cell(r['rows'], task, 'accuracy_titles_only')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "report", "all"])
    ap.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="a random-split checkpoint to compare")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where title_disjoint_table.{json,md} go")
    args = ap.parse_args(argv)
    if args.what in ("train", "all"):
        train(args.runs)
    if args.what in ("report", "all"):
        from shoprank.files import atomic_write_json, atomic_write_text

        res = report(args.reference, args.device)
        md = markdown(res)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "title_disjoint_table.json", res, indent=1)
        atomic_write_text(args.out / "title_disjoint_table.md", md)
        print(md)
        print(json.dumps({n: r["model_version"] for n, r in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
