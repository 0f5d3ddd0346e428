"""``shoprank export-onnx``: export a checkpoint's encoder to ONNX (fp32 + int8) and run the parity gate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the encoder to ONNX (fp32, int8), gate each variant on quality, print the report",
        description="Writes CHECKPOINT/onnx/{encoder.onnx, encoder-int8.onnx, manifest.json} (a pretrained-only "
        "model: the cache dir). Each variant must keep mean cosine >= --min-cosine to the torch fp32 embeddings "
        "on a fixed sample and, when the checkpoint's training sources are present, lose at most --max-drop of "
        "any nDCG@10 / MAP@5 / accuracy of `shoprank eval` on its own test split; the report says which variant "
        "is kept and why (docs/encoder_runtime.md).",
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the pretrained encoder)")
    p.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"], help="pretrained encoder (no checkpoint)")
    p.add_argument("--variants", nargs="+", default=["onnx", "onnx-int8"], choices=["onnx", "onnx-int8"])
    p.add_argument("--min-cosine", type=float, default=None, help="mean cosine floor (default 0.99)")
    p.add_argument("--max-drop", type=float, default=None, help="largest eval metric drop allowed (default 0.003)")
    p.add_argument("--no-eval", action="store_true", help="cosine gate only (skip the eval on the test split)")
    p.add_argument("--max-rows", type=int, default=2000, help="test rows per task and source for the eval gate")
    p.add_argument("--json", action="store_true", help="print the manifest (report) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoprank.model import onnx_export as ox
    from shoprank.model.checkpoint import load_model

    model, manifest = load_model(args.checkpoint, encoder=args.encoder)
    say = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    doc = ox.export_onnx(
        model, manifest, args.checkpoint, variants=tuple(args.variants),
        min_cosine=ox.MIN_COSINE if args.min_cosine is None else args.min_cosine,
        max_drop=ox.MAX_METRIC_DROP if args.max_drop is None else args.max_drop,
        evaluate=None if args.no_eval else checkpoint_eval(args.checkpoint, args.max_rows), say=say,
    )  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(format_report(doc))
    return 0


def export_checkpoint(checkpoint: str, max_rows: int | None = 2000) -> dict[str, Any]:
    """Export and fully gate a checkpoint (cosine and eval) with the default thresholds; prints the report."""
    from shoprank.model import onnx_export as ox
    from shoprank.model.checkpoint import load_model

    model, manifest = load_model(checkpoint)
    doc = ox.export_onnx(model, manifest, checkpoint, evaluate=checkpoint_eval(checkpoint, max_rows), say=print)
    print(format_report(doc))
    return doc


def checkpoint_eval(checkpoint: str | Path | None, max_rows: int | None) -> Any:
    """The gate's eval: ``runtime -> shoprank eval``'s metrics of ``checkpoint`` on its own test split (no
    baselines), the encoder on that runtime."""

    def evaluate(runtime: str) -> dict[str, Any]:
        return evaluate_on(checkpoint, runtime, max_rows)["metrics"]

    return evaluate


def evaluate_on(checkpoint: str | Path | None, runtime: str, max_rows: int | None) -> dict[str, Any]:
    """``shoprank eval``'s report of ``checkpoint`` (no baselines) with the encoder on ``runtime``."""
    from shoprank.eval.runner import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, baselines=False, max_rows=max_rows, encoder_runtime=runtime)


def format_report(doc: dict) -> str:
    """The gate's report as a few lines of text."""
    lines = [f"ONNX export of {doc['model_version']} (weights {doc['weights_sha256'][:12]})"]
    for name, v in doc["variants"].items():
        cos = v["cosine"]
        verdict = "PASS" if v["passed"] else "REFUSED"
        lines.append(f"  {name:<10} {verdict:<8} cosine mean {cos['mean']:.4f} min {cos['min']:.4f}; {v['reason']}")
        for metric, d in (v.get("eval_deltas") or {}).items():
            lines.append(f"      {metric:<40} {d:+.4f}")
    ev = doc.get("eval", {})
    gate = "run on the checkpoint's own test split" if ev.get("run") else ev.get("why")
    lines.append(f"  eval gate: {gate}")
    lines.append(f"  kept: {doc['kept']} ({doc['why']})")
    return "\n".join(lines)
