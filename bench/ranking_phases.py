"""Issue 23's table: zero-shot, the reference, + hybrid retrieval, + the cross-encoder phase, the distilled
bi-encoder, side by side on the shared data's held-out splits.

    python bench/ranking_phases.py [--cross-result cross_encoder_long] [--distill-result distill] [--n 10]

Assembles (does not recompute) the figures the benches and ``shoprank eval`` wrote to bench/results/, each
row naming the command that produced it, so every cell can be reproduced and none is typed by hand:

- ``reference_eval.json``: ``shoprank eval runs/reference/model --out runs/reference/eval --max-rows 2000``
  (Home Depot nDCG@10 on the first 2,000 test rows, Best Buy MAP@5, item tasks on unseen titles and on
  titles alone);
- ``target_headroom.json``: Home Depot nDCG@10 on *all* test rows (zero-shot, reference);
- ``retrieval_hybrid.json``: recall@100 of retrieval alone, vector vs hybrid;
- the cross-encoder result (``bench/cross_encoder.py``): the served phase reorders the first phase's top N
  by the cross-encoder alone (``ce_topN``; Home Depot by its relevance head, Best Buy by its click head);
- the distillation result (``bench/distill.py``): the distilled bi-encoder.

Splits: Home Depot by query (unseen queries), Best Buy by time (the log's newest tenth), fashion items by
title (no normalised title on both sides). Written to bench/results/ranking_phases.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
COLUMNS = (
    "Home Depot nDCG@10 (2,000 rows / all)",
    "Best Buy MAP@5",
    "recall@100 Home Depot / Best Buy",
    "season (unseen titles / titles only)",
    "article type (unseen titles / titles only)",
)


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run the benchmark that writes it first (see this script's docstring)")
    return json.loads(path.read_text())


def _f(*values: float | None) -> str:
    return " / ".join("–" if v is None else f"{v:.4f}" for v in values)


def table(cross_name: str, distill_name: str, n: int) -> dict[str, Any]:
    ev, head, hyb = _load("reference_eval"), _load("target_headroom"), _load("retrieval_hybrid")
    ce, dis = _load(cross_name), _load(distill_name)
    cell = {(r["task"], r["source"], r["metric"]): r for r in ev["table"]}
    rec = {(r["source"], r["system"]): r["recall@100"] for r in hyb["rows"]}

    def items(col: str) -> list[str]:
        return [_f(cell[(t, "fashion", "accuracy")].get(col), cell[(t, "fashion", "accuracy_titles_only")].get(col))
                for t in ("season", "category")]  # fmt: skip

    hd_ref, bb = cell[("relevance", "homedepot", "ndcg@10")], cell[("click", "bestbuy", "map@5")]
    if f"ce_top{n}" not in ce["homedepot"]["rows"][0]:
        raise SystemExit(f"{cross_name}.json has no top-{n} rerank; run bench/cross_encoder.py with --n {n}")
    ce_hd = {r["rows"]: r[f"ce_top{n}"] for r in ce["homedepot"]["rows"]}
    ce_bb = next(r for r in ce["bestbuy"]["rows"] if r["system"] == "learned_blend")
    after_hd = {r["rows"]: r["after"] for r in dis["homedepot"]}
    after_bb = next(r for r in dis["bestbuy"]["rows"] if r["model"] == "after")
    before = next(r["before"] for r in dis["homedepot"] if r["rows"] == "test, all rows")
    distilled = "distilled bi-encoder"
    if abs(before - head["homedepot"]["ndcg@10"]["reference"]) > 1e-4:  # its "before" is not today's reference
        distilled += f" (from an earlier reference: its Home Depot before-figure, all rows, is {before:.4f})"
    eval_cmd = "shoprank eval runs/reference/model --out runs/reference/eval --max-rows 2000"
    rows = [
        {"system": "zero-shot MiniLM", "cells": [
            _f(hd_ref["zero_shot"], head["homedepot"]["ndcg@10"]["zero_shot"]),
            f"{bb['zero_shot']:.4f} alone; {bb['lookup+zero_shot']:.4f} after the click lookup",
            _f(rec[("homedepot", "zero_shot vector")], rec[("bestbuy", "zero_shot vector")]), "–", "–"],
         "command": f"`{eval_cmd}`; `python bench/target_headroom.py`; `python bench/retrieval_hybrid.py`"},
        {"system": "reference (vector retrieval)", "cells": [
            _f(hd_ref["model"], head["homedepot"]["ndcg@10"]["reference"]),
            f"{bb['learned_blend']:.4f} (served click blend)",
            _f(rec[("homedepot", "reference vector")], rec[("bestbuy", "reference vector")]), *items("model")],
         "command": f"`shoprank train --config configs/reference.yaml --out runs/reference`, then `{eval_cmd}`"},
        {"system": "+ hybrid retrieval (BM25 + ANN, RRF)", "cells": [
            "= reference", "= reference",
            _f(rec[("homedepot", "reference hybrid")], rec[("bestbuy", "reference hybrid")]), "= reference",
            "= reference"],
         "command": "`python bench/retrieval_hybrid.py`"},
        {"system": f"+ cross-encoder phase (top {n})", "cells": [
            _f(ce_hd.get("test, first 2,000 rows"), ce_hd.get("test, all rows")),
            f"{ce_bb[f'ce_top{n}']:.4f} (blend's top {n} by cross click)", "= hybrid", "= reference", "= reference"],
         "command": f"`{ce['train'].get('command', 'shoprank train-cross')}`, then `{ce['command']}`"},
        {"system": distilled, "cells": [
            _f(after_hd.get("test, first 2,000 rows"), after_hd.get("test, all rows")),
            f"{after_bb['learned_blend']:.4f} (served click blend)", "–", "–", "–"],
         "command": f"`shoprank distill-labels --config configs/distill.yaml`, `shoprank train --config "
                    f"configs/distill.yaml --out runs/distill`, `shoprank train --config configs/distill_control.yaml "
                    f"--out runs/distill_control`, then `{dis['command']}`"},
    ]  # fmt: skip
    return {"rows": rows, "sources": {"reference_eval": "reference_eval.json", "headroom": "target_headroom.json",
            "retrieval": "retrieval_hybrid.json", "cross": f"{cross_name}.json", "distill": f"{distill_name}.json"},
            "cross_encoder": ce.get("cross_encoder"), "teacher": dis.get("teacher")}  # fmt: skip


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Ranking phases on the shared data (issue 23)",
        "",
        "`python bench/ranking_phases.py` assembles the figures below from the results files the commands in the "
        "last column write (it recomputes nothing). Splits: Home Depot by query (unseen queries), Best Buy by "
        "time (the log's newest tenth), fashion items by title (unseen titles). Targets: Home Depot nDCG@10 ≥ "
        "0.94, Best Buy MAP@5 ≥ 0.82, titles-only season ≥ 0.72. `=`: the phase does not change that figure "
        f"(its input is the row named). Cross-encoder: `{res['cross_encoder']}`; teacher of the distilled "
        f"bi-encoder: `{res['teacher']}`. Room above these figures: "
        "[target_headroom.md](target_headroom.md).",
        "",
        "| system | " + " | ".join(COLUMNS) + " | reproduce |",
        "| --- " * (len(COLUMNS) + 2) + "|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['system']} | " + " | ".join(r["cells"]) + f" | {r['command']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cross-result", default="cross_encoder_long", help="bench/results/NAME.json of cross_encoder.py")
    p.add_argument("--distill-result", default="distill", help="bench/results/NAME.json of distill.py")
    p.add_argument("--n", type=int, default=10, help="the cross-encoder phase's rerank_top_n to report")
    args = p.parse_args(argv)
    from shoprank.files import atomic_write_json, atomic_write_text

    res = table(args.cross_result, args.distill_result, args.n)
    atomic_write_json(RESULTS / "ranking_phases.json", res, indent=2)
    text = markdown(res)
    atomic_write_text(RESULTS / "ranking_phases.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
