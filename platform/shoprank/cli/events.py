"""``shoprank events``: load historic event logs into the online store; start or stop the local store."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from shoprank.cli.options import add_address
from shoprank.errors import ConfigError

STORE_URL_ENV = "SHOPRANK_STORE_URL"
DEFAULT_STORE_DIR = Path("out/store")


def add_store_options(p: argparse.ArgumentParser) -> None:
    """``--store URL`` / ``--store-dir DIR``: an external store, else the local one for DIR."""
    p.add_argument(
        "--store",
        default=os.environ.get(STORE_URL_ENV),
        metavar="URL",
        help=f"an external store, redis://HOST:PORT/DB (default: ${STORE_URL_ENV}; unset: the local store "
        "of --store-dir, started if it is not running)",
    )
    p.add_argument(
        "--store-dir",
        type=Path,
        default=DEFAULT_STORE_DIR,
        metavar="DIR",
        help=f"the local store's data folder (append-only file; default: {DEFAULT_STORE_DIR})",
    )


def store_url(args: argparse.Namespace) -> str:
    """The store URL of ``--store``, else the local store for ``--store-dir`` (started when needed)."""
    if args.store:
        if not args.store.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"--store {args.store!r}: expected redis://HOST:PORT/DB")
        return args.store
    from shoprank.store.server import ensure_local_store

    return ensure_local_store(args.store_dir)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "events",
        help="load event logs into the online store; start/stop the local store",
        description="The online store holds the click counters and user histories the ranker reads. "
        "Load a historic log into it, or manage the local store process.",
    )
    esub = p.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")

    ld = esub.add_parser(
        "load",
        help="load a historic event log into the store (idempotent)",
        description="Load FILE's events into the store. Idempotent: every row gets an id from its content "
        "(and how many identical rows precede it), and a row whose id is already stored is not counted again, "
        "so loading the same file twice changes nothing.",
    )
    ld.add_argument("path", type=Path, help="the log file (a canonical events file, or the Best Buy click log)")
    ld.add_argument(
        "--format", "-f", dest="fmt", required=True, choices=("bestbuy-clicks", "canonical"), help="input format"
    )
    add_store_options(ld)
    ld.add_argument(
        "--salt", default=None, help="user-id hash salt (default: $SHOPRANK_ID_SALT, then $SHOPRANK_ID_SALT_FILE)"
    )
    ld.add_argument("--batch-size", type=int, default=500, help="events per atomic write (default: 500)")
    ld.add_argument("--ray", action="store_true",
                    help="a Ray Data job (canonical events files, a file or a folder): for logs too big for one "
                    "process; the same event ids, so it is idempotent with the plain load")  # fmt: skip
    ld.add_argument("--shards", type=int, default=8, help="with --ray: parallel writer groups (default: 8)")
    add_address(ld)
    ld.add_argument("--json", action="store_true", help="print the summary as JSON")
    ld.set_defaults(func=cmd_load)

    st = esub.add_parser(
        "store",
        help="start (or find) the local store and print its URL; --stop stops it",
        description="The local store: a Valkey server with its append-only file (fsync on every write) in "
        "--store-dir. Started detached, so it outlives this command; `shoprank serve` and `demo` reuse it.",
    )
    st.add_argument(
        "--store-dir", type=Path, default=DEFAULT_STORE_DIR, metavar="DIR", help="data folder (default: out/store)"
    )
    st.add_argument("--port", type=int, default=0, help="port for a new server (default: a free one)")
    st.add_argument("--stop", action="store_true", help="stop the server running for --store-dir")
    st.set_defaults(func=cmd_store)


def cmd_load(args: argparse.Namespace) -> int:
    from shoprank.store.load import load_events

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.ray:
        from shoprank.store.load_ray import load_events_ray

        if args.fmt != "canonical" or args.shards < 1:
            raise ConfigError("--ray loads canonical events files (--format canonical; `shoprank data` writes them) "
                              "with --shards >= 1")  # fmt: skip
        report = load_events_ray(args.path, store_url(args), shards=args.shards, batch_size=args.batch_size,
                                 address=args.address)  # fmt: skip
    else:
        report = load_events(args.path, args.fmt, store_url(args), salt=args.salt, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    print(f"loaded {report.source} ({report.fmt}): {report.rows_read:,} rows read, {report.events:,} events")
    print(f"  counted now       {report.accepted:>10,}")
    print(f"  already loaded    {report.duplicates:>10,}")
    for reason, n in sorted(report.skipped.items()):
        print(f"  skipped ({reason}) {n:,}")
    print(f"  {report.seconds:.1f}s, {report.events_per_s:,.0f} events/s")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from shoprank.store.server import ensure_local_store, stop_local_store

    if args.stop:
        print("stopped" if stop_local_store(args.store_dir) else f"no store running for {args.store_dir}")
        return 0
    print(ensure_local_store(args.store_dir, port=args.port))
    return 0
