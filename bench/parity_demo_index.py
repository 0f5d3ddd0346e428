"""Served results on the demo index, this tree vs an older commit, side by side (issue 20's check).

    python bench/parity_demo_index.py --old 577adf8            # the commit before the restructure

Synthesises the demo's shop (10k items, seed 0, as ``shoprank demo``), then in two child
processes, one per code version, builds the index with that version's Ray Data job (pretrained
MiniLM) and answers the same 100 searches through that version's in-process
``SearchPipeline.handle`` (the server's own request path). Prints and writes
``bench/results/parity_demo_index.{json,md}``: how many answers have the same item ids, and the
largest score difference.

The old version runs from ``git archive`` of ``--old`` in a temp dir: its child is started with
that tree's ``platform/`` as the working directory and ``python -c``, so Python finds the old
``shoprank`` there before the installed one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in each child: only APIs both versions have (build_index, SearchPipeline.handle, pb2).
CHILD = r"""
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import ray
import shoprank
from shoprank.retrieval.build import build_index
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.protos import pb2
catalogue, index_dir, queries_file, out = sys.argv[1:5]
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # the old tree has no init_ray
build_index(catalogue, index_dir, encoder="minilm")
ray.shutdown()
pipe = SearchPipeline(index_dir, encoder="minilm", device="cpu")
answers = []
for q in json.loads(open(queries_file).read()):
    r = pipe.handle(pb2.SearchRequest(query=q["query"], k=10, context=pb2.Context(month=q["month"])), pb2)
    answers.append({"ids": [it.item_id for it in r.items], "scores": [it.score for it in r.items],
                    "intent": r.intent.label})
open(out, "w").write(json.dumps({"shoprank": shoprank.__file__, "answers": answers}))
"""


def queries(data_dir: Path, n: int) -> list[dict]:
    """``n`` fixed searches: the shop's own queries first, then item titles; months cycle 0..12."""
    import polars as pl

    texts = pl.read_parquet(data_dir / "queries.parquet")["text"].unique(maintain_order=True).to_list()[: n // 2]
    titles = pl.read_parquet(data_dir / "catalogue.parquet")["title"].sample(n, seed=0).to_list()
    texts += titles[: n - len(texts)]
    return [{"query": t, "month": i % 13} for i, t in enumerate(texts)]


def run_child(cwd: Path, work: Path, name: str, catalogue: Path, queries_file: Path) -> dict:
    out = work / f"{name}.json"
    cmd = [sys.executable, "-c", CHILD, str(catalogue), str(work / f"index-{name}"), str(queries_file), str(out)]
    subprocess.run(cmd, cwd=cwd, check=True)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="git ref of the older code (e.g. the commit before a refactor)")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()

    from shoprank.data.synth import write_dataset

    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        work = Path(tmp)
        old_tree = work / "old"
        old_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.old], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
        write_dataset(work / "data", n_items=args.items, seed=0)
        qs = queries(work / "data", args.queries)
        queries_file = work / "queries.json"
        queries_file.write_text(json.dumps(qs))
        catalogue = work / "data" / "catalogue.parquet"
        new = run_child(REPO, work, "new", catalogue, queries_file)
        old = run_child(old_tree / "platform", work, "old", catalogue, queries_file)
    assert str(old_tree) in old["shoprank"] and str(old_tree) not in new["shoprank"], (old["shoprank"], new["shoprank"])
    same_ids = sum(a["ids"] == b["ids"] for a, b in zip(new["answers"], old["answers"], strict=True))
    same_intent = sum(a["intent"] == b["intent"] for a, b in zip(new["answers"], old["answers"], strict=True))
    pairs = zip(new["answers"], old["answers"], strict=True)
    max_diff = max((abs(x - y) for a, b in pairs for x, y in zip(a["scores"], b["scores"], strict=False)), default=0.0)
    n = len(qs)
    result = {"old": args.old, "items": args.items, "queries": n, "same_ids": same_ids, "same_intent": same_intent,
              "max_score_diff": max_diff}  # fmt: skip
    line = (f"{same_ids}/{n} searches return the same top-10 item ids, {same_intent}/{n} the same intent; "
            f"largest score difference {max_diff:.2e} (this tree vs {args.old}, {args.items:,}-item demo shop, "
            "pretrained MiniLM)")  # fmt: skip
    print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity_demo_index.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "parity_demo_index.md").write_text(
        "# Served results on the demo index, before vs after the restructure\n\n"
        f"`python bench/parity_demo_index.py --old {args.old}`\n\n{line}.\n"
    )


if __name__ == "__main__":
    main()
