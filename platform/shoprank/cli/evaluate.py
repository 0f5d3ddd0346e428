"""``shoprank eval``: per-task metrics of a checkpoint, with baselines, or on your own files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shoprank.errors import ShoprankError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (held-out splits, or --judgements / --clicks files)",
        description="Without inputs: every trained task on the held-out test split of the checkpoint's own training "
        "sources, next to BM25, zero-shot MiniLM, popularity, query-count lookup and trivial baselines. "
        "--judgements FILE.csv (query, product_title[, product_description], label): nDCG@10 and Spearman. "
        "--clicks FILE.csv --catalogue PRODUCTS (Best Buy format): MAP@5 and recall@100.",
    )
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + manifest.json), e.g. OUT/model")
    p.add_argument("--judgements", type=Path, default=None, help="graded judgements CSV")
    p.add_argument("--clicks", type=Path, default=None, help="click log CSV in the Best Buy format")
    p.add_argument(
        "--catalogue", type=Path, default=None, help="product catalogue for --clicks (XML/.zip or canonical)"
    )
    p.add_argument(
        "--write-blend",
        action="store_true",
        help="with --clicks: write the fitted click blend's weights to CHECKPOINT/click_blend.json, "
        "where a ranker serving this checkpoint with a store reads them",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (metric names as keys)")
    p.add_argument("--out", type=Path, default=None, help="also write eval.json, eval.md (and plots) here")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines (faster)")
    p.add_argument("--max-rows", type=int, default=4000, help="cap on test rows per task and source (default 4000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from shoprank.eval import runner
    from shoprank.eval.report import write_report

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.clicks is not None or args.catalogue is not None:
        if args.clicks is None or args.catalogue is None:
            raise ShoprankError("--clicks and --catalogue go together")
        result = runner.evaluate_clicks(args.checkpoint, args.clicks, args.catalogue, write_blend=args.write_blend)
    elif args.judgements is not None:
        result = runner.evaluate_judgements(args.checkpoint, args.judgements)
    else:
        report = runner.evaluate_checkpoint(
            args.checkpoint,
            baselines=not args.no_baselines,
            max_rows=args.max_rows,
            log=None if args.json else print,
        )
        if args.out:
            write_report(runner.clean(report), args.out)
        if args.json:
            print(json.dumps(runner.clean(report["metrics"]), sort_keys=True))
        else:
            print(runner.format_table(report["table"]))
        return 0
    if args.out:
        write_report(
            runner.clean({"metrics": result, "table": [{"metric": k, "model": v} for k, v in result.items()]}), args.out
        )
    if args.json:
        print(json.dumps(runner.clean(result), sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k:<34} {v:.4f}" if isinstance(v, float) else f"{k:<34} {v}")
    return 0
