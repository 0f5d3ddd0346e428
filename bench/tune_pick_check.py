"""A point of a sweep's Pareto front, re-trained by ``shoprank train``, lands where the sweep put it.

    flock /tmp/shoprank-ray.lock .venv/bin/python bench/tune_pick_check.py \\
        --sweep runs/tune/title-pareto-out --tune-config configs/tune_pareto.yaml \\
        --prefer click=0.7,relevance=0.3 --name pareto

1. ``shoprank tune pick`` writes the preferred front point as a training config (the trial's own:
   the same warm start, frozen encoder, weights, seed, split and validation sample);
2. ``shoprank train`` trains it, in its own process on its own local Ray;
3. its last epoch's validation scores (``history.json``: the per-task scores the sweep's front is
   drawn in, computed the same way) are set beside the front point's, and each difference is
   judged against twice the spread of the same score over the equal-weights seeds of the sweep
   (its ``trials.csv``).

Writes ``bench/results/tune_pick_<name>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402
from shoprank.files import atomic_write_text  # noqa: E402
from shoprank.tune.compute import beyond_2sigma, spread, verdict  # noqa: E402
from shoprank.tune.config import load_tune_config  # noqa: E402
from shoprank.tune.objective import task_scores  # noqa: E402
from shoprank.tune.pick import pick_point  # noqa: E402
from shoprank.tune.schedulers import score_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHOPRANK = str(Path(sys.executable).with_name("shoprank"))


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", required=True, help="a finished sweep's output directory (front.json, trials.csv)")
    ap.add_argument("--tune-config", required=True, help="the sweep's YAML (its objective and front tasks)")
    ap.add_argument("--prefer", default="click=0.7,relevance=0.3")
    ap.add_argument("--name", default="pareto", help="results file suffix")
    ap.add_argument("--out", default=None, help="run directory (default: <sweep>-picked)")
    args = ap.parse_args()

    sweep = Path(args.sweep)
    out = Path(args.out or f"{sweep}-picked")
    out.mkdir(parents=True, exist_ok=True)
    picked = out / "picked.yaml"
    run([SHOPRANK, "tune", "pick", "--sweep", str(sweep), "--prefer", args.prefer, "--out", str(picked)])
    if not (out / "model" / "manifest.json").exists():
        run([SHOPRANK, "train", "--config", str(picked), "--out", str(out)])

    tune_cfg = load_tune_config(args.tune_config)
    tasks = tune_cfg.front_tasks()
    point, _ = pick_point(sweep, args.prefer)  # the point `tune pick` wrote
    trial = point["trial"]
    history = json.loads((out / "history.json").read_text())["history"]
    last = {k: float(v) for k, v in history[-1].items() if isinstance(v, (int, float))}
    again = task_scores(last, tune_cfg.objective, tasks, "val/")

    trials = pl.read_csv(sweep / "trials.csv")
    equal = trials.filter(pl.col("trial").str.starts_with("equal"))
    rows = []
    for t in tasks:
        mean, std = spread(equal[score_key(t)].to_list())
        delta = again[t] - point["scores"][t]
        rows.append(
            {
                "task": t,
                "front point": point["scores"][t],
                "re-trained": again[t],
                "difference": delta,
                "equal mean": mean,
                "equal std": std,
                "verdict": verdict(delta, std).replace("seed noise", "reproduced"),
            }
        )
    ok = all(not math.isnan(r["equal std"]) and not beyond_2sigma(r["difference"], r["equal std"]) for r in rows)
    doc = {
        "sweep": str(sweep),
        "prefer": args.prefer,
        "trial": trial,
        "weights": point["weights"],
        "equal_seeds": equal["trial"].to_list(),
        "epochs": len(history),
        "rows": rows,
        "reproduced": ok,
    }
    lines = [
        f"# Picked front point re-trained by `shoprank train` ({args.name})",
        "",
        f"`{' '.join(sys.argv)}`",
        "",
        f"Sweep `{sweep}`, `--prefer {args.prefer}` picks trial {trial}; `shoprank train --config "
        f"{picked}` re-trains it ({len(history)} epochs). Validation scores (the front's axes; the "
        f"sweep's validation split), against twice the spread of the {equal.height} equal-weights "
        f"seeds ({', '.join(equal['trial'].to_list())}):",
        "",
        "| task | front point | re-trained | difference | equal mean ± std | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['front point']:.4f} | {r['re-trained']:.4f} | {r['difference']:+.4f} | "
            f"{r['equal mean']:.4f} ± {r['equal std']:.4f} | {r['verdict']} |"
        )
    lines += ["", f"Reproduced within 2σ on every task: **{'yes' if ok else 'no'}**.", ""]
    results = REPO / "bench" / "results"
    atomic_write_text(results / f"tune_pick_{args.name}.json", json.dumps(doc, indent=2, default=float))
    atomic_write_text(results / f"tune_pick_{args.name}.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
