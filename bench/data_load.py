"""Data-layer benchmark.

1. Load throughput on the Home Depot relevance file: the shoprank loader (pyarrow CSV parse as
   text + vectorised Polars casts and quarantine) against a plain ``csv``-module loader that does
   the same work (decode latin-1, parse, strip, cast the label, quarantine bad rows, drop
   duplicate ids, build judgements/queries/catalogue). One run each; the ratio is printed.
2. Peak memory (RSS high-water mark, in a fresh subprocess each) of writing the synthetic data
   set with 100k and 1M items (``--quick``: 10k and 100k).

    python bench/data_load.py [--quick] [--file PATH]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = (
    Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "homedepot" / "relevance.csv"
)


def csv_module_load(path: Path) -> dict[str, int]:
    """The same parsing work as shoprank.data.sources.homedepot.load_homedepot, with the standard csv module."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader)]
    idx = {h: i for i, h in enumerate(header)}
    for col in ("product_uid", "product_title", "search_term", "relevance"):
        if col not in idx:
            raise SystemExit(f"{path}: missing column {col!r}")
    i_id, i_uid, i_title, i_term, i_rel = (
        idx.get("id"),
        idx["product_uid"],
        idx["product_title"],
        idx["search_term"],
        idx["relevance"],
    )
    n = len(header)
    judgements: list[tuple[str, str, str, float]] = []
    catalogue: dict[str, str] = {}
    queries: dict[str, str] = {}
    qid_cache: dict[str, str] = {}
    quarantine: list[tuple[int, str, str]] = []
    seen_ids: set[str] = set()
    rows = 0
    for row in reader:
        rows += 1
        if len(row) != n:
            quarantine.append((rows, "wrong field count", ",".join(row)))
            continue
        uid, title, term = row[i_uid].strip(), row[i_title].strip(), row[i_term].strip()
        if not uid:
            quarantine.append((rows, "empty id", ",".join(row)))
            continue
        if not title:
            quarantine.append((rows, "empty title", ",".join(row)))
            continue
        if not term:
            quarantine.append((rows, "empty text", ",".join(row)))
            continue
        try:
            label = float(row[i_rel])
        except ValueError:
            quarantine.append((rows, "unparseable number", ",".join(row)))
            continue
        if i_id is not None:
            rid = row[i_id]
            if rid in seen_ids:
                quarantine.append((rows, "duplicate id", ",".join(row)))
                continue
            seen_ids.add(rid)
        qid = qid_cache.get(term)
        if qid is None:
            norm = " ".join(term.lower().split())
            qid = qid_cache[term] = hashlib.sha256(("q:" + norm).encode()).hexdigest()[:16]
        queries.setdefault(qid, term)
        catalogue.setdefault(uid, title)
        judgements.append((qid, term, uid, label))
    return {
        "rows": rows,
        "judgements": len(judgements),
        "queries": len(queries),
        "catalogue": len(catalogue),
        "quarantined": len(quarantine),
    }


def bench_load(path: Path) -> None:
    from shoprank.data.loaders import load

    size_mb = path.stat().st_size / 1e6
    load(path, "homedepot")  # warm-up: imports and first-call costs are not throughput
    t0 = time.perf_counter()
    result = load(path, "homedepot")
    t_polars = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = csv_module_load(path)
    t_csv = time.perf_counter() - t0
    kept = {k: v.height for k, v in result.frames.items()}
    assert kept["judgements"] == ref["judgements"] and kept["queries"] == ref["queries"], (kept, ref)
    print(f"load throughput, {path} ({size_mb:.1f} MB, {result.rows_read:,} rows), one run each:")
    print(
        f"  shoprank loader (pyarrow+polars): {t_polars:6.3f}s  {result.rows_read / t_polars:>12,.0f} rows/s"
        f"  {size_mb / t_polars:7.1f} MB/s"
    )
    print(
        f"  plain csv-module loader:          {t_csv:6.3f}s  {ref['rows'] / t_csv:>12,.0f} rows/s"
        f"  {size_mb / t_csv:7.1f} MB/s"
    )
    print(f"  ratio (csv-module time / shoprank time): {t_csv / t_polars:.1f}x")
    print(
        f"  same output: judgements {kept['judgements']:,}, queries {kept['queries']:,}, "
        f"catalogue {kept['catalogue']:,}, quarantined {result.quarantine.height}"
    )


_CHILD = r"""
import json, resource, sys, tempfile, time
from shoprank.data import synth
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    m = synth.write_dataset(d, n_items=int(sys.argv[1]), seed=0, progress=False)
    dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"items": int(sys.argv[1]), "seconds": dt, "peak_kb": peak, "after_import_kb": base,
                  "rows": m["rows"]}))
"""


def bench_memory(sizes: list[int]) -> None:
    print("peak memory of write_dataset (RSS high-water mark, fresh process each):")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        total = sum(r["rows"].values())
        print(
            f"  {n:>9,} items: peak {r['peak_kb'] / 1024:7.0f} MiB (after imports {r['after_import_kb'] / 1024:5.0f} "
            f"MiB), {r['seconds']:6.1f}s, {total:,} rows written"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes for the memory part (10k, 100k items)")
    ap.add_argument(
        "--file", type=Path, default=DEFAULT_FILE, help=f"Home Depot relevance CSV (default: {DEFAULT_FILE})"
    )
    args = ap.parse_args()
    if args.file.exists():
        bench_load(args.file)
    else:
        print(f"load throughput: skipped, {args.file} not present (../shared/data is needed)")
    bench_memory([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
