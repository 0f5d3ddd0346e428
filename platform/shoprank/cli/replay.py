"""``shoprank replay``: a click log's searches and clicks against a running server, scored as eval scores.

See :mod:`shoprank.serving.replay` for what is sent and how it is scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shoprank.cli.options import add_client, client_of
from shoprank.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a click log through Search and Feedback over gRPC; print MAP@5, errors, latency",
        description="Send each click of a Best Buy format log through Search (its query, user, the month of "
        "its time, k) in time order, then the click through Feedback, and score the served lists as "
        "`shoprank eval --clicks` does. How a team checks a deployment against a log before switching traffic.",
    )
    p.add_argument("--clicks", type=Path, required=True, metavar="FILE.csv", help="click log (Best Buy format)")
    p.add_argument("-k", type=int, default=5, help="results per search (default 5)")
    p.add_argument("--no-feedback", action="store_true", help="search only: send no clicks back")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N clicks (in time order)")
    add_client(p)
    p.add_argument("--json", action="store_true", help="print one JSON line (default: a short summary)")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from shoprank.serving.replay import read_clicks, replay

    if args.k < 1:
        raise ConfigError(f"-k {args.k}: must be at least 1")
    rows, counts = read_clicks(args.clicks)
    rows = rows[: args.limit] if args.limit else rows

    def progress(done: int, total: int) -> None:
        if not args.json and (done % 500 < 1 or done == total):
            print(f"# {done}/{total} clicks replayed", file=sys.stderr)

    with client_of(args) as client:
        report = replay(client, rows, k=args.k, feedback=not args.no_feedback, progress=progress).to_dict()
    report["log"] = counts
    if args.json:
        print(json.dumps(report))
    else:
        lat = report["latency_ms"]
        print(f"map@{min(5, args.k)} {report[f'map@{min(5, args.k)}']:.4f}  recall@{args.k} "
              f"{report[f'recall@{args.k}']:.4f}  requests {report['requests']}  errors {report['errors'] or 0}  "
              f"p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms  degraded {report['degraded']}")  # fmt: skip
    return 1 if report["errors"] else 0
