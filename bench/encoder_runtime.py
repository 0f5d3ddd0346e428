"""Encoder runtimes side by side: torch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 (issue 18).

    python bench/encoder_runtime.py               # 512 titles, 2 threads, 5 alternating rounds
    python bench/encoder_runtime.py --quick       # 256 titles, 3 rounds

The model is the reference checkpoint (runs/reference/model) when present, else the pretrained
all-MiniLM-L6-v2; the titles are real (../shared/data fashion product names) when present, else the
embedded synthetic catalogue's. Every runtime embeds the same titles in batches of 64 on the same
threads, in alternating rounds (a change in background load hits every runtime alike); items/s is
each runtime's median round, after one untimed pass of every runtime over all the titles (ONNX Runtime
allocates per input shape on first sight: without it the first round measures allocation). Printed and
written to bench/results/encoder_runtime.{md,json}:

1. items/s per runtime and the ratio to torch fp32 (target: int8 >= 2.5x), with length-bucketed
   batches (``MultiTaskModel.embed``: texts sorted by token count, each batch padded to its own
   longest) and, for torch and int8, without (batches in input order) -> what bucketing adds;
2. cosine of each runtime's embeddings to torch fp32's on these titles (mean, min);
3. the eval deltas of the parity gate (``shoprank export-onnx``'s report in the checkpoint's ONNX
   manifest: nDCG@10 / MAP@5 / accuracy on the checkpoint's own test split), when it was run;
4. the pair/ranker heads (mixer + towers, the ranker's forward) in torch vs ONNX Runtime at the
   ranker's c1 and c16 batch sizes (200 and 3,200 candidate rows): whether exporting them pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data"))
REFERENCE = REPO / "runs" / "reference" / "model"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def titles(n: int) -> tuple[list[str], str]:
    """``n`` product titles: real fashion names when ../shared/data has them, else synthetic ones."""
    styles = SHARED / "fashion" / "styles.csv"
    if styles.is_file():
        import polars as pl

        df = pl.read_csv(styles, infer_schema_length=0, truncate_ragged_lines=True)
        names = df["productDisplayName"].drop_nulls().head(n).to_list()
        return names, f"{len(names)} fashion product titles ({styles})"
    from shoprank.retrieval.synthetic import catalogue

    return catalogue(n, seed=0)["title"].to_list(), f"{n} synthetic catalogue titles (no ../shared/data)"


def items_per_s(fn: Any, texts: list[str]) -> float:
    t0 = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - t0)


def unbucketed(model: Any, batch: int) -> Any:
    """Embed in input order: each call of ``embed`` gets one batch, so nothing is sorted across batches."""

    def run(texts: list[str]) -> np.ndarray:
        return np.concatenate(
            [model.embed(texts[i : i + batch], batch_size=batch) for i in range(0, len(texts), batch)]
        )

    return run


def bench_heads(model: Any, threads: int, rounds: int) -> dict[str, Any]:
    """The ranker's pairwise forward (mixer + towers) in torch vs an ONNX Runtime session of the same module."""
    import tempfile

    import onnxruntime as ort
    import torch
    from shoprank.model.features import NUM_ITEM_FEATURES, month_features

    class Heads(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, q, i, num, month):  # noqa: ANN001, ANN202
            return torch.stack(list(self.m.pair_outputs(q, i, num, month).values()), dim=-1)

    heads = Heads(model).eval()
    d = model.encoder.dim
    path = Path(tempfile.mkdtemp()) / "heads.onnx"
    args = tuple(torch.zeros(2, k) for k in (d, d, NUM_ITEM_FEATURES, 2))
    axes = {n: {0: "rows"} for n in ("q", "i", "num", "month", "out")}
    with torch.no_grad():
        torch.onnx.export(heads, args, str(path), dynamo=False, opset_version=17, dynamic_axes=axes,
                          input_names=["q", "i", "num", "month"], output_names=["out"])  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for label, rows in (("c1", 200), ("c16", 3200)):
        feeds = {
            "q": rng.standard_normal((rows, d)).astype(np.float32),
            "i": rng.standard_normal((rows, d)).astype(np.float32),
            "num": rng.random((rows, NUM_ITEM_FEATURES)).astype(np.float32),
            "month": month_features(np.full(rows, 6)).astype(np.float32),
        }
        tens = {k: torch.from_numpy(v) for k, v in feeds.items()}

        def run_torch(tens: dict = tens) -> np.ndarray:
            with torch.inference_mode():
                return heads(tens["q"], tens["i"], tens["num"], tens["month"]).numpy()

        def run_ort(feeds: dict = feeds) -> np.ndarray:
            return sess.run(["out"], feeds)[0]

        same = float(np.abs(run_torch() - run_ort()).max())
        ms = {"torch": [], "onnx": []}
        for _ in range(max(rounds, 5) * 4):
            for name, fn in (("torch", run_torch), ("onnx", run_ort)):
                t0 = time.perf_counter()
                fn()
                ms[name].append((time.perf_counter() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in ms.items()}
        out[label] = {"rows": rows, "torch_ms": med["torch"], "onnx_ms": med["onnx"],
                      "speedup": med["torch"] / med["onnx"], "max_abs_diff": same}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 titles, 3 rounds")
    p.add_argument("--titles", type=int, default=None, help="titles to embed (default 512; --quick 256)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --quick 3)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every runtime (default 2)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--checkpoint", default=None, help="default: runs/reference/model when present, else pretrained")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    n = args.titles or (256 if args.quick else 512)
    rounds = args.rounds or (3 if args.quick else 5)

    import torch
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.model import onnx_export as ox
    from shoprank.model.checkpoint import load_model, model_version
    from shoprank.model.runtime import OnnxEncoder

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or (str(REFERENCE) if (REFERENCE / "manifest.json").is_file() else None)
    model, manifest = load_model(checkpoint, encoder="minilm")
    version = model_version(manifest, "minilm")
    texts, source = titles(n)
    print(f"model {version} ({checkpoint or 'pretrained all-MiniLM-L6-v2'}); {source}; batch {args.batch}, "
          f"{args.threads} threads, {rounds} alternating rounds; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    directory, doc = ox.ensure_onnx(model, manifest, checkpoint)  # built (cosine gate) if missing or stale
    sessions = {name: OnnxEncoder(directory / ox.FILES[name], name, threads=args.threads) for name in ox.FILES}

    def on(runtime: str) -> Any:
        model.runtime = sessions.get(runtime)
        return model

    ref = on("torch").embed(texts)
    runs = {
        "torch": lambda t: on("torch").embed(t, batch_size=args.batch),
        "onnx": lambda t: on("onnx").embed(t, batch_size=args.batch),
        "onnx-int8": lambda t: on("onnx-int8").embed(t, batch_size=args.batch),
        "torch (no bucketing)": lambda t: unbucketed(on("torch"), args.batch)(t),
        "onnx-int8 (no bucketing)": lambda t: unbucketed(on("onnx-int8"), args.batch)(t),
    }
    for fn in runs.values():  # warm up every runtime on every batch shape once (ONNX Runtime sizes its arenas
        fn(texts)  # per shape on first sight; a replica or a campaign job pays that once, not per batch)
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for name, fn in runs.items():
            rates[name].append(items_per_s(fn, texts))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cos = {name: ox.cosine_parity(ref, on(name).embed(texts)) for name in ("onnx", "onnx-int8")}
    model.runtime = None
    base = med["torch"]
    results: dict[str, Any] = {
        "item_split": ((manifest or {}).get("train_config") or {}).get("split", {}).get("item_split", "item"),
        "model_version": version, "titles": source, "threads": args.threads, "batch": args.batch, "rounds": rounds,
        "load_avg": os.getloadavg(), "items_per_s": med, "items_per_s_rounds": rates,
        "ratio_to_torch": {k: v / base for k, v in med.items()},
        "bucketing_gain": {"torch": med["torch"] / med["torch (no bucketing)"],
                           "onnx-int8": med["onnx-int8"] / med["onnx-int8 (no bucketing)"]},
        "cosine_to_torch": cos, "gate": {k: doc[k] for k in ("kept", "why", "eval")},
        "gate_variants": {k: {f: v.get(f) for f in ("passed", "reason", "cosine", "eval_deltas")}
                          for k, v in doc["variants"].items()},
    }  # fmt: skip
    print("\nruntime                      items/s   x torch fp32")
    for k, v in med.items():
        print(f"  {k:<26} {v:>8.1f}   {v / base:>5.2f}x")
    gain = results["bucketing_gain"]
    print(f"int8 / torch fp32 = {med['onnx-int8'] / base:.2f}x (target >= 2.5x); length bucketing adds "
          f"{gain['torch']:.2f}x to torch, {gain['onnx-int8']:.2f}x to int8")  # fmt: skip
    for k, c in cos.items():
        print(f"cosine to torch fp32, {k}: mean {c['mean']:.4f} min {c['min']:.4f}")
    ev = doc.get("eval", {})
    if ev.get("run"):
        for k, v in doc["variants"].items():
            worst = min((v.get("eval_deltas") or {"-": 0.0}).items(), key=lambda kv: kv[1])
            print(f"eval deltas ({k}, gate report): worst {worst[0]} {worst[1]:+.4f}; {v['reason']}")
    else:
        print(f"eval deltas: the gate's eval was not run ({ev.get('why')}); run shoprank export-onnx --checkpoint DIR")
    print(f"gate: kept {doc['kept']} ({doc['why']})")
    heads = bench_heads(model, args.threads, rounds)
    results["heads"] = heads
    for label, h in heads.items():
        print(f"pair heads {label} ({h['rows']} rows): torch {h['torch_ms']:.2f} ms, onnx {h['onnx_ms']:.2f} ms "
              f"-> {h['speedup']:.2f}x (max |diff| {h['max_abs_diff']:.1e})")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "encoder_runtime.json", results, indent=2, default=float)
    atomic_write_text(args.out / "encoder_runtime.md", markdown(results, doc))
    print(f"\nwrote {args.out / 'encoder_runtime.md'}")
    return 0


SPLIT_BY_TASK = {"intent": "query", "retrieval": "query", "relevance": "query", "click": "time", "demand": "title"}


def split_of(metric: str, item_split: str) -> str:
    """The held-out split an eval metric comes from (docs/splits.md); item tasks follow the checkpoint's."""
    return SPLIT_BY_TASK.get(metric.split("/", 1)[0], item_split)


def markdown(r: dict[str, Any], doc: dict[str, Any]) -> str:
    base = r["items_per_s"]["torch"]
    rows = "\n".join(f"| {k} | {v:.1f} | {v / base:.2f}× |" for k, v in r["items_per_s"].items())
    cos = "\n".join(f"| {k} | {c['mean']:.4f} | {c['min']:.4f} |" for k, c in r["cosine_to_torch"].items())
    ev = doc.get("eval", {})
    if ev.get("run"):
        lines = []
        for k, v in doc["variants"].items():
            for metric, d in (v.get("eval_deltas") or {}).items():
                split = split_of(metric, r.get("item_split", "item"))
                lines.append(f"| {k} | {metric} | {split} | {ev['torch'].get(metric, float('nan')):.4f} | {d:+.4f} |")
        evals = "| variant | metric | split | torch | delta |\n| --- | --- | --- | --- | --- |\n" + "\n".join(lines)
    else:
        evals = f"Not run: {ev.get('why')}."
    heads = "\n".join(
        f"| {k} | {h['rows']} | {h['torch_ms']:.2f} | {h['onnx_ms']:.2f} | {h['speedup']:.2f}× |"
        for k, h in r["heads"].items()
    )
    gates = "\n".join(
        f"- {k}: {'passed' if v['passed'] else 'REFUSED'} — {v['reason']}" for k, v in doc["variants"].items()
    )
    return f"""# bench/encoder_runtime.py — torch fp32 vs ONNX Runtime fp32 vs int8 (issue 18)

`python bench/encoder_runtime.py` — model {r["model_version"]}; {r["titles"]}; batches of {r["batch"]},
{r["threads"]} threads for every runtime; {r["rounds"]} alternating rounds, median shown; load average
at the end {r["load_avg"][0]:.1f}. Every ratio comes from this one run.

## Throughput

| runtime | items/s | × torch fp32 |
| --- | --- | --- |
{rows}

int8 / torch fp32: **{r["ratio_to_torch"]["onnx-int8"]:.2f}×** (target ≥ 2.5×). Length bucketing (texts sorted by
token count before batching, every runtime) adds {r["bucketing_gain"]["torch"]:.2f}× to torch and
{r["bucketing_gain"]["onnx-int8"]:.2f}× to int8 (the "no bucketing" rows batch in input order).

## Quality: cosine to torch fp32 on these titles

| runtime | mean | min |
| --- | --- | --- |
{cos}

## Parity gate (`shoprank export-onnx`, report in the ONNX manifest)

{gates}

Kept: **{doc["kept"]}** ({doc["why"]}).

Eval deltas (variant − torch, the checkpoint's own test split; split names as in docs/splits.md: `query`
= unseen query groups, `time` = the log's latest period, `item` = random item-id split, `title` = title-disjoint):

{evals}

## Pair/ranker heads: torch vs ONNX Runtime

| ranker batch | rows | torch ms | onnx ms | speed-up |
| --- | --- | --- | --- | --- |
{heads}
"""


if __name__ == "__main__":
    sys.exit(main())
