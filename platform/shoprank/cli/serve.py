"""``shoprank serve``, ``shoprank search``, ``shoprank index build`` and ``shoprank salt``: online search
from the shell (the user-id salt serving needs: see docs/privacy.md)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from shoprank.cli.events import add_store_options, store_url
from shoprank.cli.options import add_address, add_client, add_encoder_runtime, add_token, client_of, token_of
from shoprank.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "serve",
        help="serve search over gRPC (Ray Serve) in the foreground; Ctrl-C stops Serve and Ray",
        description="Start a local Ray, deploy the search app behind Serve's gRPC proxy and wait. "
        "Without --index, builds one from the demo catalogue (OUT/demo data, or a small synthetic one).",
    )
    s.add_argument("--checkpoint", default=None, help="model checkpoint (default: the pretrained encoder alone)")
    s.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"], help="pretrained encoder (no checkpoint)")
    s.add_argument("--index", default=None, help="index artefact directory (from `shoprank index build`)")
    add_encoder_runtime(s)  # the query encoder's (serving.encoder_runtime)
    s.add_argument("--port", type=int, default=9000, help="gRPC port (default 9000; the TLS port with --tls-*)")
    s.add_argument("--plaintext-port", type=int, default=None, help="with TLS: the proxy's plaintext port")
    s.add_argument("--plaintext-host", default="127.0.0.1", metavar="HOST",
                   help="with TLS: who may call the plaintext port: 127.0.0.1 (default, loopback callers only) "
                   "or 0.0.0.0 (anyone)")  # fmt: skip
    add_token(s, "require 'authorization: Bearer TOKEN'; local use only: any user on the machine sees it in `ps` "
              "(prefer --token-file or $SHOPRANK_TOKEN)")  # fmt: skip
    s.add_argument("--insecure-default-salt", action="store_true",
                   help="serve without a user-id salt ($SHOPRANK_ID_SALT / $SHOPRANK_ID_SALT_FILE), hashing user ids "
                   "with the public default salt: reversible for guessable ids; demos and tests only")  # fmt: skip
    s.add_argument("--tls-cert", default=None, help="PEM certificate for TLS")
    s.add_argument("--tls-key", default=None, help="PEM private key for TLS")
    s.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    s.add_argument("--name", default="shoprank", help="Serve application name (default shoprank)")
    s.add_argument("--data", default="out/demo/data", help="demo data folder used when --index is not given")
    s.add_argument("--served-log", default=None, metavar="DIR",
                   help="log every served result and acknowledged Feedback event as parquet under DIR "
                   "(training data: format served-log; see docs/feedback_loop.md)")  # fmt: skip
    add_store_options(s)
    s.set_defaults(func=cmd_serve)

    q = sub.add_parser(
        "search",
        help="search over gRPC: one line per result (rank, id, title, score)",
        description="Call a running `shoprank serve`. On error prints the gRPC status name and message and exits 1.",
    )
    q.add_argument("query")
    q.add_argument("-k", type=int, default=10, help="results wanted (default 10)")
    add_client(q)
    q.add_argument("--month", type=int, default=0, help="context month 1..12")
    q.add_argument("--filter", action="append", default=[], metavar="NAME=VALUE",
                   help="filter (category, price_min, price_max, in_stock); repeatable")  # fmt: skip
    q.add_argument("--weight", action="append", default=[], metavar="TASK=W", help="blend weight; repeatable")
    q.add_argument("--user-id", default=None, help="caller's user id (hashed server-side before logging)")
    q.add_argument("--json", action="store_true", help="print the whole response as JSON")
    q.set_defaults(func=cmd_search)

    ix = sub.add_parser("index", help="search index artefacts")
    ixs = ix.add_subparsers(dest="index_command", required=True, metavar="SUBCOMMAND")
    b = ixs.add_parser(
        "build",
        help="embed a catalogue (Ray Data) and write a versioned index artefact",
        description="Read a catalogue with Polars (canonical parquet/csv, or --format for any loader format), "
        "embed it on a Ray Data actor pool and write DIR atomically (embeddings.npy, items.parquet, "
        "hnsw.bin beyond the threshold, manifest.json).",
    )
    add_index_arguments(b)
    b.set_defaults(func=cmd_index_build)

    st = sub.add_parser("salt", help="the user-id salt: make a new one, or name the configured one")
    sts = st.add_subparsers(dest="salt_command", required=True, metavar="SUBCOMMAND")
    n = sts.add_parser("new", help="write a new random salt to FILE (mode 0600) and print its id",
                       description="Write 256 random bits (hex) to FILE, owner-only, and print the salt's id. "
                       "Use it with SHOPRANK_ID_SALT_FILE=FILE. Rotating: see docs/privacy.md.")  # fmt: skip
    n.add_argument("--out", required=True, help="salt file to write (refuses to overwrite)")
    n.set_defaults(func=cmd_salt_new)
    i = sts.add_parser("id", help="print the id of the configured salt (never the salt)",
                       description="Print the id of the salt $SHOPRANK_ID_SALT / $SHOPRANK_ID_SALT_FILE name "
                       "(or of --file), and where it came from; with --check RAW=HASH, say whether HASH is "
                       "RAW hashed with that salt (exit 1 if not).")  # fmt: skip
    i.add_argument("--file", default=None, help="a salt file to name instead of the configured salt")
    i.add_argument("--check", default=None, metavar="RAW=HASH", help="does this salt turn user id RAW into HASH?")
    i.set_defaults(func=cmd_salt_id)


def add_index_arguments(b: argparse.ArgumentParser) -> None:
    """Arguments of an index build (shared by ``shoprank index build`` and ``shoprank.cli.index_job``)."""
    b.add_argument("--catalogue", required=True, help="catalogue file (or source folder with --format)")
    b.add_argument("--format", default=None, help="loader format (default: by extension, parquet or csv)")
    b.add_argument("--checkpoint", default=None, help="model checkpoint (default: the pretrained encoder)")
    b.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"])
    add_encoder_runtime(b)
    b.add_argument("--out", required=True, help="artefact directory to write")
    b.add_argument("--num-actors", type=int, default=1, help="embedding actors (default 1)")
    b.add_argument("--batch-size", type=int, default=256, help="items per encoder forward pass (default 256)")
    b.add_argument("--hnsw-threshold", type=int, default=50_000, help="build HNSW at or above this many items")
    b.add_argument("--shards", type=int, default=1, help="split the index into S shards, built in parallel "
                   "(one Ray task each) and served by one replica group per shard (default 1)")
    b.add_argument("--compressed-threshold", type=int, default=2_000_000,
                   help="IVF-PQ with exact re-scoring for shards of at least this many items (default 2,000,000)")
    add_address(b)


# -- serve ------------------------------------------------------------------------------------
def _default_index(args: argparse.Namespace) -> str:
    """Build (once) an index of the demo catalogue for `shoprank serve` without --index."""
    from shoprank.model.checkpoint import expected_model_version
    from shoprank.retrieval.artefact import read_index_manifest
    from shoprank.retrieval.build import build_index

    out = Path("out/serve/index")
    want = expected_model_version(args.checkpoint, args.encoder)
    try:
        if read_index_manifest(out).get("model_version") == want:
            return str(out)
    except Exception:  # noqa: BLE001 - missing or stale: rebuild
        pass
    data = Path(args.data) / "catalogue.parquet"
    if data.is_file():
        source = data
    else:
        from shoprank.retrieval.synthetic import catalogue

        source = Path("out/serve/catalogue.parquet")
        source.parent.mkdir(parents=True, exist_ok=True)
        catalogue(2000).write_parquet(source)
    print(f"building an index of {source} into {out} ...", flush=True)
    build_index(source, out, checkpoint=args.checkpoint, encoder=args.encoder)
    return str(out)


def cmd_serve(args: argparse.Namespace) -> int:
    from shoprank.hashing import require_salt
    from shoprank.net import free_port
    from shoprank.ray_runtime import init_ray
    from shoprank.serve_app import server
    from shoprank.serving.auth import PLAINTEXT_HOST_ENV, plaintext_open_to_all
    from shoprank.store.server import running_store, stop_local_store

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    salt_id = require_salt(args.insecure_default_salt, who="shoprank serve")  # before anything starts
    token = token_of(args)  # a bad --token-file fails here, before Ray starts
    open_plaintext = plaintext_open_to_all(args.plaintext_host)
    grpc_port = args.port
    if args.tls_cert:
        for f in (args.tls_cert, args.tls_key):
            if not Path(f).is_file():
                raise ConfigError(f"{f}: not found")
        # Set before Ray starts: every worker (Serve's proxy included) inherits them.
        os.environ["SHOPRANK_TLS_CERT"] = str(Path(args.tls_cert).resolve())
        os.environ["SHOPRANK_TLS_KEY"] = str(Path(args.tls_key).resolve())
        os.environ["SHOPRANK_TLS_PORT"] = str(args.port)
        os.environ[PLAINTEXT_HOST_ENV] = args.plaintext_host
        grpc_port = args.plaintext_port or free_port()
    stop = threading.Event()
    own_store = not args.store and running_store(args.store_dir) is None  # started here: stopped here

    def _on_signal(signum: int, _frame: object) -> None:
        print(f"\nshoprank serve: {signal.Signals(signum).name}, shutting down ...", flush=True)
        stop.set()

    try:
        init_ray(num_cpus=args.num_cpus, serve=True)
        # After ray.init, which installs its own SIGTERM handler in the driver.
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        index = args.index or _default_index(args)
        server.start_serve(grpc_port)
        app_args = {"index_dir": str(Path(index).resolve()), "encoder": args.encoder}
        if args.checkpoint:
            app_args["checkpoint"] = str(Path(args.checkpoint).resolve())
        if args.token:
            app_args["token"] = args.token
        elif args.token_file:
            app_args["token_file"] = str(Path(args.token_file).resolve())
        if args.insecure_default_salt:
            app_args["allow_default_salt"] = True
        app_args["store_url"] = store_url(args)
        app_args["serving"] = {"encoder_runtime": args.encoder_runtime}
        if args.served_log:
            app_args["serving"]["served_log_dir"] = str(Path(args.served_log).resolve())
        server.deploy(app_args, name=args.name)
        who = "any caller" if open_plaintext else "loopback callers only"
        where = f"TLS on :{args.port} (plaintext :{grpc_port}, {who})" if args.tls_cert else f":{grpc_port}"
        auth = "bearer token required" if token else "no auth"
        print(f"shoprank serving app {args.name!r} over gRPC {where}, {auth}; user-id salt {salt_id}; index {index}; "
              f"events to {app_args['store_url']}"
              f"{f'; served log to {args.served_log}' if args.served_log else ''}. Ctrl-C to stop.",
              flush=True)  # fmt: skip
        print(f'try: shoprank search "winter boots" -k 10 --target localhost:{args.port}', flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        if own_store:
            stop_local_store(args.store_dir)
        print("shoprank serve: Serve and Ray stopped.", flush=True)
    return 0


# -- salt -------------------------------------------------------------------------------------
def cmd_salt_new(args: argparse.Namespace) -> int:
    from shoprank.files import atomic_write_text
    from shoprank.hashing import new_salt, salt_id

    if Path(args.out).exists():
        raise ConfigError(f"{args.out} exists: a salt file is never overwritten (rotate to a new file)")
    salt = new_salt()
    atomic_write_text(args.out, salt + "\n", mode=0o600)
    print(f"wrote {args.out} (mode 0600): salt {salt_id(salt)}; use SHOPRANK_ID_SALT_FILE={Path(args.out).resolve()}")
    return 0


def cmd_salt_id(args: argparse.Namespace) -> int:
    from shoprank.hashing import configured_salt, hash_id, owner_only_secret, salt_id

    if args.file:
        salt, source = owner_only_secret(args.file, "salt file"), args.file
    else:
        found = configured_salt()
        salt, source = found if found else (None, "none configured: the PUBLIC default salt")
    print(f"salt {salt_id(salt)} ({source})")
    if args.check:
        raw, sep, want = args.check.rpartition("=")
        if not sep or not raw:
            raise ConfigError(f"--check {args.check!r}: expected RAW=HASH")
        same = hash_id(raw, salt) == want.strip()
        print(f"{want.strip()} {'is' if same else 'is NOT'} user id {raw!r} under salt {salt_id(salt)}")
        return 0 if same else 1
    return 0


# -- search -----------------------------------------------------------------------------------
def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, value = it.partition("=")
        if not sep or not name:
            raise ConfigError(f"--{what} {it!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from shoprank.serving.client import SearchError

    filters = _pairs(args.filter, "filter")
    weights = {}
    for name, value in _pairs(args.weight, "weight").items():
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weight {name}={value}: not a number") from None
    client = client_of(args)
    try:
        resp = client.search(
            args.query, args.k, month=args.month, filters=filters or None, blend_weights=weights or None,
            user_id=args.user_id,
        )  # fmt: skip
    except SearchError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(resp), indent=2))
        return 0
    for item in resp.items:
        print(f"{item.rank:>3}  {item.item_id:<14} {item.title[:60]:<60} {item.score:.4f}")
    zs = ", zero-shot" if resp.intent.zero_shot else ""
    print(
        f"# intent {resp.intent.label or '-'} ({resp.intent.confidence:.2f}{zs})"
        f" | model {resp.model_version} | index {resp.index_version} | {resp.timings_ms.get('total', 0):.1f} ms",
        file=sys.stderr,
    )
    return 0


# -- index build ------------------------------------------------------------------------------
def cmd_index_build(args: argparse.Namespace) -> int:
    import ray

    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.build import build_index

    started = init_ray(args.address)
    try:
        m = build_index(
            args.catalogue, args.out, checkpoint=args.checkpoint, encoder=args.encoder, fmt=args.format,
            num_actors=args.num_actors, batch_size=args.batch_size, hnsw_threshold=args.hnsw_threshold,
            shards=args.shards, compressed_threshold=args.compressed_threshold, encoder_runtime=args.encoder_runtime,
        )  # fmt: skip
    finally:
        if started:
            ray.shutdown()
    ann = (m.get("ann") or {}).get("kind") or ("hnsw" if m.get("hnsw") else "exact")
    if m.get("shards"):
        ann = f"{len(m['shards'])} shards ({', '.join(sorted({s['kind'] for s in m['shards']}))})"
    print(f"wrote {args.out}: {m['num_items']:,} items, dim {m['dim']}, {ann} search, "
          f"index_version {m['index_version']}, model {m['model_version']} ({m['total_seconds']}s)")  # fmt: skip
    return 0
