"""The demo's fine-tuning stage: a short run of the packaged ``demo.yaml`` plus its evaluation table.

from shoprank.train.demo import run_demo_training
checkpoint = run_demo_training(out_dir)                      # synthetic data in memory
checkpoint = run_demo_training(out_dir, data_dir=OUT/"data")  # the demo's synthesised parquet
"""

from __future__ import annotations

from pathlib import Path

from shoprank.eval.report import write_report
from shoprank.eval.runner import clean, evaluate_checkpoint, format_table
from shoprank.resources import DEMO_CONFIG
from shoprank.tasks.config import SourceConfig
from shoprank.train.config import load_config
from shoprank.train.driver import train


def demo_config(data_dir: str | Path | None = None, workers: int | None = None):  # noqa: ANN201 - TrainConfig
    cfg = load_config(DEMO_CONFIG)
    if data_dir is not None:
        cfg = cfg.model_copy(
            update={"sources": {"synth": SourceConfig(format="canonical", path=str(Path(data_dir).resolve()))}}
        )
    if workers:
        cfg = cfg.model_copy(update={"num_workers": workers})
    return cfg


def run_demo_training(
    out_dir: str | Path, *, data_dir: str | Path | None = None, workers: int | None = None, baselines: bool = True
) -> Path:
    """Fine-tune MiniLM briefly on the synthetic data (Ray Train), print the evaluation table,
    write ``OUT/eval.json`` + ``OUT/eval.md``, and return the checkpoint directory (``OUT/model``)."""
    out = Path(out_dir)
    cfg = demo_config(data_dir, workers)
    res = train(cfg, out, log=lambda s: print(f"  {s}"))
    report = evaluate_checkpoint(res.checkpoint, baselines=baselines, max_rows=1000)
    write_report(clean(report), out)
    print(
        f"  fine-tuned {cfg.epochs} epochs x {cfg.steps_per_epoch} steps in {res.wall_seconds:.0f}s -> {res.checkpoint}"
    )
    print("  held-out test split (model vs baselines):")
    print("\n".join("  " + line for line in format_table(report["table"]).splitlines()))
    return res.checkpoint
