"""``shoprank data``: synthesise, validate and describe data sets."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from shoprank.errors import DataError

_VALIDATE_EPILOG = "formats:\n" + "\n".join(
    f"  {name:<17} {text}"
    for name, text in {
        "homedepot": "Home Depot relevance CSV (latin-1) -> catalogue, queries, judgements",
        "bestbuy-clicks": "Best Buy click log CSV -> events (clicks), queries (intent = clicked category)",
        "bestbuy-products": "Best Buy products XML or .xml.zip -> catalogue (duplicate SKUs quarantined)",
        "wands": "WANDS query.csv (tab-separated) -> queries; a folder adds product.csv/label.csv",
        "fashion": "Myntra styles.csv -> catalogue with seasons",
        "online-retail": "UCI Online Retail CSV -> transactions (returns kept as negative quantities)",
        "instacart": "Instacart products (headerless) + aisles.csv/departments.csv -> catalogue",
        "canonical": "CSV/parquet in a canonical schema: a file, or a folder of <kind>.parquet",
    }.items()
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="synthesise, validate and describe data sets",
        description="Data sets: generate the synthetic default, load and validate real files, print statistics.",
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    s = dsub.add_parser(
        "synth",
        help="write the deterministic synthetic data set (parquet) to a folder",
        description="Generate the seeded synthetic shop (catalogue, queries, judgements, click log, transactions) "
        "and write one parquet file per frame plus manifest.json. Same --items and --seed give identical files.",
    )
    s.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    s.add_argument("--items", type=int, default=10_000, help="catalogue size in items (default: 10000; 1M works)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument(
        "--salt",
        default=None,
        help="salt for hashing synthetic user/customer ids (default: $SHOPRANK_ID_SALT, then $SHOPRANK_ID_SALT_FILE)",
    )
    s.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    s.set_defaults(func=cmd_synth)

    v = dsub.add_parser(
        "validate",
        help="load a file in a known format, print rows kept and quarantined by reason",
        description=textwrap.fill(
            "Load PATH in format F into canonical frames. Bad rows (unparseable number, empty title/text, "
            "duplicate id, negative price, bad timestamp, wrong field count, unclosed quote, record too long) "
            "are quarantined with a reason and counted; good rows are kept. Gzip, bzip2, xz and zip files are "
            "read directly. A missing, empty, binary or corrupt file, a duplicated or missing column fails "
            "with one line and exit status 2.",
            width=88,
        ),
        epilog=_VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("path", type=Path, help="the file (or folder, for instacart, wands and canonical)")
    v.add_argument(
        "--format",
        "-f",
        required=True,
        dest="fmt",
        metavar="F",
        help="input format: homedepot, bestbuy-clicks, bestbuy-products, wands, fashion, online-retail, "
        "instacart, canonical (see below)",
    )
    v.add_argument(
        "--salt",
        default=None,
        help="salt for hashing user/customer ids (default: $SHOPRANK_ID_SALT, then $SHOPRANK_ID_SALT_FILE)",
    )
    v.add_argument(
        "--encoding",
        default=None,
        help="text encoding, applied before any binary check (e.g. utf-16, utf-16-le, cp1252; default: from a "
        "byte-order mark, else UTF-8 when valid, else latin-1)",
    )
    v.add_argument(
        "--kind",
        default=None,
        help="canonical only: the frame kind when it cannot be told from the "
        "columns or file name (catalogue, queries, judgements, events, transactions)",
    )
    v.add_argument(
        "--quarantine-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the quarantined rows (source, row, reason, raw) to FILE (.csv or .parquet)",
    )
    v.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the kept canonical frames as DIR/<kind>.parquet",
    )
    v.add_argument("--json", action="store_true", help="print the summary as JSON")
    v.set_defaults(func=cmd_validate)

    st = dsub.add_parser(
        "stats",
        help="row counts, nulls, distinct counts and distributions of a data set",
        description="Describe a data set: per frame, row count, nulls and distinct values per column, and the "
        "category, season, label, event and monthly distributions.",
        epilog=_VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("path", type=Path, help="a canonical parquet/csv file or folder, or a file in --format")
    st.add_argument(
        "--format",
        "-f",
        dest="fmt",
        default="canonical",
        metavar="F",
        help="input format (default: canonical); any format that validate accepts",
    )
    st.add_argument("--kind", default=None, help="canonical only: the frame kind (see validate --help)")
    st.add_argument("--json", action="store_true", help="print the statistics as JSON")
    st.set_defaults(func=cmd_stats)


def cmd_synth(args: argparse.Namespace) -> int:
    from shoprank.data.synth import write_dataset

    if args.items < 1:
        raise DataError(f"--items must be at least 1, got {args.items}")
    t0 = time.perf_counter()
    manifest = write_dataset(
        args.out, n_items=args.items, seed=args.seed, salt=args.salt, progress=False if args.no_progress else None
    )
    dt = time.perf_counter() - t0
    print(f"wrote synthetic data set to {args.out} (seed {args.seed}, {dt:.1f}s)")
    for kind, n in manifest["rows"].items():
        print(f"  {kind + '.parquet':<22} {n:>10,} rows")
    return 0


def print_summary(summary: dict[str, Any], file: Any = None) -> None:
    file = file or sys.stdout
    print(f"{summary['source']} ({summary['format']}): {summary['rows_read']:,} rows read", file=file)
    for kind, n in summary["kept"].items():
        print(f"  kept {kind:<13} {n:>10,} rows", file=file)
    print(f"  quarantined        {summary['quarantined']:>10,} rows", file=file)
    for reason, n in summary["quarantined_by_reason"].items():
        print(f"    {reason:<24} {n:>8,}", file=file)
    for note in summary.get("notes", []):
        print(f"  note: {note}", file=file)


# Library errors a hostile file can still raise past the loaders' own checks: reported as one line, exit 2.
def _library_errors() -> tuple[type[BaseException], ...]:
    import csv
    import zlib
    from xml.etree import ElementTree

    import polars as pl
    import pyarrow as pa

    return (pl.exceptions.PolarsError, pa.ArrowException, UnicodeError, zlib.error, EOFError, csv.Error,
            ElementTree.ParseError, OSError)  # fmt: skip


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from shoprank.data.loaders import load

    options: dict[str, Any] = {}
    if getattr(args, "encoding", None):
        options["encoding"] = args.encoding
    if getattr(args, "kind", None):
        if args.fmt.replace("_", "-") != "canonical":
            raise DataError("--kind applies only to --format canonical")
        options["kind"] = args.kind
    try:
        return load(args.path, args.fmt, salt=getattr(args, "salt", None), **options, **extra)
    except _library_errors() as e:
        first = str(e).splitlines()[0][:300] if str(e) else ""
        raise DataError(f"{args.path}: cannot load as {args.fmt} ({type(e).__name__}: {first})") from e


def _write_frame(df: Any, path: Path) -> None:
    """Write ``df`` atomically (owner-only: quarantined rows hold raw input) as parquet or CSV."""
    from shoprank.files import atomic_path

    try:
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".parquet":
                df.write_parquet(tmp)
            else:
                df.write_csv(tmp)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from e


def cmd_validate(args: argparse.Namespace) -> int:
    result = _load(args)
    summary = result.summary()
    if args.quarantine_out is not None:
        _write_frame(result.quarantine, args.quarantine_out)
        summary["quarantine_file"] = str(args.quarantine_out)
    if args.out is not None:
        for kind, df in result.frames.items():
            _write_frame(df, args.out / f"{kind}.parquet")
        summary["out"] = str(args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
        if args.quarantine_out is not None:
            print(f"  quarantined rows written to {args.quarantine_out}")
        if args.out is not None:
            print(f"  canonical frames written to {args.out}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from shoprank.data.stats import dataset_stats, format_stats

    result = _load(args)
    stats = dataset_stats(result.frames)
    if args.json:
        print(
            json.dumps(
                {
                    "source": result.source,
                    "format": result.fmt,
                    "frames": stats,
                    "quarantined_by_reason": result.quarantined_by_reason(),
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"{result.source} ({result.fmt})")
        print(format_stats(stats))
        if result.quarantine.height:
            print(f"quarantined: {result.quarantine.height:,} rows ({result.quarantined_by_reason()})")
    return 0
