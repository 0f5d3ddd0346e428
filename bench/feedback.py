"""The online store's cost on the request path, Feedback ingest against a plain client, bulk load time.

    python bench/feedback.py            # 240 Search requests a concurrency, 3 x 60 Feedback batches of 100
    python bench/feedback.py --quick    # 64 requests, 2 x 20 batches (results to bench/results/feedback_quick.*)

Data: the shared Best Buy catalogue (``products.xml.zip``) and click log (``clicks.csv``); the model is
``runs/reference/model`` when it exists (its ``click_blend.json`` when it has one), else the pretrained
all-MiniLM-L6-v2. Every ratio below comes from this one run:

1. **Load**: ``shoprank events load clicks.csv --format bestbuy-clicks --store URL --json`` (the CLI, as a
   user runs it) into a fresh local store (append-only file, fsync on every write): wall time and
   events/s; then the same command again, asserting that it counts nothing (accepted 0, every event a
   duplicate, ``stats``/key count/popularity sums unchanged).
2. **Search**: two Serve apps on the same index and model, side by side in alternating rounds on the
   same requests (log queries, their users, month from their time) over real gRPC: ``with`` the store
   loaded in 1 and the learned click blend (``num_candidates`` 100, one pipelined store read per ranked
   batch), ``without`` any store. p50/p99 at concurrency 1 and 16 -> with/without (target <= 1.15x).
   In-process, the same run: one batch's store read (``StoreClickSource.lookup``) and the whole click
   step (``ServedClicks.pick``), the work the ``with`` app adds.
3. **Feedback**: batches of 100 log clicks (fresh event ids, so every one counts) sent over gRPC by
   ``--callers`` concurrent callers vs a plain pipelined redis client (same callers, same batches) writing
   the same keys to the same server: per event ``SET e:{id} NX EX``, the ops of
   :func:`shoprank.store.writer.event_ops` as plain commands (``HINCRBYFLOAT`` for a decayed counter,
   ``HINCRBY``, ``SADD``, ``XADD``) and the ``stats`` counts, one pipeline (no MULTI) per batch -> ratio
   (target >= 0.8x). Floors in the same rounds: the write script called directly from this process (the
   store's share), and the gRPC health check through the same proxy and ingress (Serve's per-call share).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "bestbuy"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from shoprank.serving.loadgen import pct, run_load  # noqa: E402 - the latency bench's percentiles and load loop

REFERENCE = REPO / "runs" / "reference" / "model"
# Hand-set click blend used only when the checkpoint has no fitted one: the latency does not depend on the
# values (every feature of every candidate is computed and scored either way); the output names which.
HAND_BLEND = {"share_7d": 1.0, "share_all": 0.5, "words": 0.3, "neighbours": 0.3, "user_clicked": 0.5,
              "popular_7d": 0.2, "model_rank": 2.0}  # fmt: skip


# -- 1. bulk load -----------------------------------------------------------------------------------
def cli_load(clicks: Path, url: str) -> tuple[dict[str, Any], float]:
    """``shoprank events load`` as a subprocess: its JSON report and the command's wall seconds."""
    cmd = [sys.executable, "-m", "shoprank", "events", "load", str(clicks), "--format", "bestbuy-clicks",
           "--store", url, "--json"]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def store_digest(url: str) -> dict[str, Any]:
    import redis

    c = redis.Redis.from_url(url, decode_responses=True)
    try:
        pop = c.hgetall("sr:c:7d:pop")
        return {"keys": c.dbsize(), "stats": c.hgetall("sr:stats"),
                "pop_7d_sum": sum(float(v) for k, v in pop.items() if k != "")}  # fmt: skip
    finally:
        c.close()


def bench_load(clicks: Path, url: str) -> dict[str, Any]:
    print(f"\n== load {clicks} into a fresh store ==", flush=True)
    first, wall1 = cli_load(clicks, url)
    after_first = store_digest(url)
    again, wall2 = cli_load(clicks, url)
    after_again = store_digest(url)
    assert again["accepted"] == 0 and again["duplicates"] == first["events"], again
    dups = int(after_again["stats"].pop("duplicates", 0))  # the one thing a reload adds: its count of repeats
    assert dups == first["events"] and after_again == after_first, (after_first, after_again)
    res = {"first": first, "first_wall_s": wall1, "reload": again, "reload_wall_s": wall2, "store": after_first,
           "events_per_s_wall": first["events"] / wall1}  # fmt: skip
    print(f"  {first['rows_read']:,} rows, {first['events']:,} events counted in {first['seconds']:.1f}s "
          f"({first['events_per_s']:,.0f} events/s; the command {wall1:.1f}s wall, imports included)\n"
          f"  reload: {again['accepted']} counted, {again['duplicates']:,} already there, {wall2:.1f}s wall; "
          f"keys ({after_first['keys']:,}), stats and counters unchanged")  # fmt: skip
    return res


# -- 2. Search with and without the store -------------------------------------------------------
def log_requests(clicks: Path, n: int, pb2) -> list:
    """The newest ``n`` distinct (query, user) clicks of the log as Search requests (raw user ids: the
    server hashes them as the loader did)."""
    import polars as pl

    df = pl.read_csv(clicks, columns=["user", "query", "query_time"], infer_schema=False).drop_nulls()
    df = df.unique(subset=["user", "query"], keep="last", maintain_order=True).sort("query_time").tail(n)
    reqs = []
    for user, query, t in df.iter_rows():
        month = datetime.fromisoformat(t[:19]).month
        reqs.append(pb2.SearchRequest(query=query[:256], k=10, user_id=user, context=pb2.Context(month=month)))
    return reqs


def click_step_floor(url: str, index: Path, weights, requests: list, ranked: list[list[str]]) -> dict[str, float]:
    """In-process, one request a batch: the store read alone, and the whole click step (read + features)."""
    from shoprank.clicks.features import ClickRequest
    from shoprank.hashing import hash_id
    from shoprank.retrieval.artefact import load_artefact
    from shoprank.serving.clicks import ClickItems, ServedClicks

    items = ClickItems(load_artefact(index).items)
    sc = ServedClicks.from_store(url, weights, timeout_s=5.0, num_candidates=100)
    lookup, pick, batch16 = [], [], []
    crs = [ClickRequest(r.query, hash_id(r.user_id)) for r in requests]
    try:
        for cr, r, ids in zip(crs, requests, ranked, strict=True):
            t0 = time.perf_counter()
            sc.source.lookup([cr])
            t1 = time.perf_counter()
            sc.pick([cr], [items], [ids], [r.k], [None])
            t2 = time.perf_counter()
            lookup.append((t1 - t0) * 1e3)
            pick.append((t2 - t1) * 1e3)
        for i in range(0, len(crs) - 15, 16):  # a c16 ranked batch: one store round trip for all 16
            t0 = time.perf_counter()
            sc.pick(crs[i : i + 16], [items] * 16, ranked[i : i + 16], [10] * 16, [None] * 16)
            batch16.append((time.perf_counter() - t0) * 1e3)
    finally:
        sc.close()
    return {"store_read_p50_ms": pct(lookup, 50), "click_step_p50_ms": pct(pick, 50),
            "click_step_p99_ms": pct(pick, 99), "click_step_batch16_p50_ms": pct(batch16, 50)}  # fmt: skip


def bench_search(args, port: int, url: str, index: Path, weights) -> dict[str, Any]:
    from shoprank.serving.client import SearchClient
    from shoprank.serving.protos import pb2

    reqs = log_requests(args.clicks, args.requests, pb2)
    clients = {name: SearchClient(f"localhost:{port}", application=name, timeout=120) for name in ("with", "without")}
    calls = {name: (lambda r, c=c: c.stub.Search(r, metadata=c.metadata, timeout=120)) for name, c in clients.items()}
    for fn in calls.values():
        run_load(fn, reqs[:16], 4)
    res: dict[str, Any] = {"requests": len(reqs)}
    rounds = max(1, args.rounds)
    chunks = [reqs[i::rounds] for i in range(rounds)]
    for c in (1, 16):
        lat: dict[str, list[float]] = {"with": [], "without": []}
        stats = {"degraded": 0, "blended": 0, "same_top1": 0}
        for chunk in chunks:  # alternating rounds: background load hits both sides alike
            outs = {}
            for name, fn in calls.items():
                la, _, outs[name] = run_load(fn, chunk, c)
                lat[name] += la
            stats["degraded"] += sum(o.degraded for o in outs["with"])
            stats["blended"] += sum(bool(o.signals) for o in outs["with"])
            stats["same_top1"] += sum(a.items[0].item_id == b.items[0].item_id
                                      for a, b in zip(outs["with"], outs["without"], strict=True))  # fmt: skip
        row = {name: {"p50": pct(v, 50), "p99": pct(v, 99)} for name, v in lat.items()}
        row.update(stats, p50_ratio=row["with"]["p50"] / row["without"]["p50"],
                   p99_ratio=row["with"]["p99"] / row["without"]["p99"])  # fmt: skip
        res[f"c{c}"] = row
        print(f"  c{c:<2} with store p50 {row['with']['p50']:.1f} / p99 {row['with']['p99']:.1f} ms, without "
              f"{row['without']['p50']:.1f} / {row['without']['p99']:.1f} ms -> p50 {row['p50_ratio']:.2f}x "
              f"(target <= 1.15x), p99 {row['p99_ratio']:.2f}x; {stats['degraded']} degraded, "
              f"{stats['blended']}/{len(reqs)} with behavioural signals", flush=True)  # fmt: skip
    top100 = [clients["without"].stub.Search(pb2.SearchRequest(query=r.query, k=100, context=r.context),
                                             metadata=clients["without"].metadata, timeout=120)
              for r in reqs]  # fmt: skip
    floor = click_step_floor(url, index, weights, reqs, [[it.item_id for it in t.items] for t in top100])
    floor["c1_ratio_from_added_work"] = 1 + floor["click_step_p50_ms"] / res["c1"]["without"]["p50"]
    res["in_process"] = floor
    print(f"  in-process, one request a batch: store read p50 {floor['store_read_p50_ms']:.2f} ms, whole click "
          f"step (read + features + blend) p50 {floor['click_step_p50_ms']:.2f} ms -> the c1 ratio the added work "
          f"alone implies: {floor['c1_ratio_from_added_work']:.2f}x; a batch of 16: "
          f"{floor['click_step_batch16_p50_ms']:.1f} ms")  # fmt: skip
    for cl in clients.values():
        cl.close()
    return res


# -- 3. Feedback ingest -------------------------------------------------------------------------
def feedback_batches(clicks: Path, n_batches: int, size: int, tag: str, pb2) -> tuple[list, list]:
    """``n_batches`` batches of log clicks with ids ``{tag}-{i}``: as FeedbackRequests and as Events."""
    import polars as pl
    from shoprank.store.config import StoreConfig
    from shoprank.store.events import parse_events

    df = pl.read_csv(clicks, columns=["user", "sku", "query", "click_time"], infer_schema=False).drop_nulls()
    rows = df.head(n_batches * size).iter_rows()
    reqs, evs = [], []
    for b in range(n_batches):
        batch = []
        for i in range(size):
            user, sku, query, t = next(rows)
            ms = int(datetime.fromisoformat(t[:23]).replace(tzinfo=UTC).timestamp() * 1000)
            batch.append(pb2.FeedbackEvent(user_id=user, item_id=sku, query=query[:256], type=pb2.CLICK,
                                           event_time_ms=ms, event_id=f"{tag}-{b}-{i}"))  # fmt: skip
        reqs.append(pb2.FeedbackRequest(events=batch))
        evs.append(parse_events(batch, StoreConfig()))
    return reqs, evs


def plain_commands(events, keys, cfg) -> list[tuple]:
    """The floor client's commands for one batch: the same keys the write script touches."""
    from shoprank.store.writer import event_ops

    cmds: list[tuple] = []
    for e in events:
        cmds.append(("SET", keys.event("api:" + e.event_id), 1, "NX", "EX", cfg.event_id_ttl_s))
        cmds.append(("HINCRBY", keys.stats, f"type:{e.type}", 1))
        for op, key, field, arg in event_ops(e, keys, cfg.event_log_maxlen):
            if op == "D":
                cmds.append(("HINCRBYFLOAT", key, field, 1.0))
            elif op == "N":
                cmds.append(("HINCRBY", key, field, int(arg)))
            elif op in ("S", "K"):
                cmds.append(("SADD", key, field))
            else:
                cmds.append(("XADD", key, "MAXLEN", "~", int(arg), "*", "e", field))
    cmds.append(("HINCRBY", keys.stats, "events", len(events)))
    return cmds


def events_per_s(send, batches: list, callers: int, size: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(send, batches))
    return len(batches) * size / (time.perf_counter() - t0)


def bench_feedback(args, port: int, url: str) -> dict[str, Any]:
    import threading

    import redis
    from shoprank.serving.client import SearchClient
    from shoprank.serving.protos import pb2
    from shoprank.store.config import StoreConfig
    from shoprank.store.keys import Keys
    from shoprank.store.writer import StoreWriter

    cfg, keys, size, n = StoreConfig(), Keys("sr:"), args.batch_events, args.batches
    client = SearchClient(f"localhost:{port}", application="with", timeout=120)
    local = threading.local()

    def plain_client() -> redis.Redis:
        if not hasattr(local, "plain"):
            local.plain, local.writer = redis.Redis.from_url(url), StoreWriter(url, cfg)
        return local.plain

    def grpc_send(req) -> None:
        resp = client.stub.Feedback(req, metadata=client.metadata, timeout=120)
        assert resp.accepted == size, resp

    def plain_send(cmds) -> None:
        pipe = plain_client().pipeline(transaction=False)
        for cmd in cmds:
            pipe.execute_command(*cmd)
        pipe.execute()

    def script_send(evs) -> None:
        plain_client()
        assert local.writer.write(evs).accepted == size

    def health(_) -> None:
        client.health()

    modes: dict[str, list[float]] = {"grpc": [], "plain": [], "script": [], "health_calls": []}
    warm, _ = feedback_batches(args.clicks, args.callers, size, "warm", pb2)
    list(map(grpc_send, warm))
    for r in range(args.feedback_rounds):
        reqs, evs = feedback_batches(args.clicks, n, size, f"grpc{r}", pb2)
        _, plain_evs = feedback_batches(args.clicks, n, size, f"plain{r}", pb2)
        _, script_evs = feedback_batches(args.clicks, n, size, f"script{r}", pb2)
        cmds = [plain_commands(b, keys, cfg) for b in plain_evs]
        modes["grpc"].append(events_per_s(grpc_send, reqs, args.callers, size))
        modes["plain"].append(events_per_s(plain_send, cmds, args.callers, size))
        modes["script"].append(events_per_s(script_send, script_evs, args.callers, size))
        modes["health_calls"].append(events_per_s(health, list(range(n)), args.callers, 1))
    client.close()
    ops = float(np.mean([len(plain_commands(b, keys, cfg)) for b in plain_evs]))
    res = {name: float(np.median(v)) for name, v in modes.items()}
    res.update(callers=args.callers, batch_events=size, batches_a_round=n, rounds=args.feedback_rounds,
               plain_commands_a_batch=ops, grpc_over_plain=res["grpc"] / res["plain"],
               script_over_plain=res["script"] / res["plain"], by_round=modes)  # fmt: skip
    print(f"  events/s (median of {args.feedback_rounds} rounds, {args.callers} callers, {size} events a batch): "
          f"Feedback over gRPC {res['grpc']:,.0f}, plain pipelined client {res['plain']:,.0f} ({ops:.0f} commands "
          f"a batch) -> {res['grpc_over_plain']:.2f}x (target >= 0.8x)\n"
          f"  floors: the write script from this process {res['script']:,.0f} events/s "
          f"({res['script_over_plain']:.2f}x plain); health checks through Serve {res['health_calls']:,.0f} calls/s "
          f"= {res['health_calls'] * size:,.0f} events/s at {size} a call", flush=True)  # fmt: skip
    return res


# -- the run ----------------------------------------------------------------------------------------
def prepare_index(args, out: Path) -> tuple[Path, Any, str]:
    """The Best Buy index for the model (built once), the blend weights and where they came from."""
    from shoprank.clicks.features import CLICK_BLEND_FILE, BlendWeights
    from shoprank.model.checkpoint import expected_model_version
    from shoprank.retrieval.artefact import read_index_manifest
    from shoprank.retrieval.build import build_index

    version = expected_model_version(args.checkpoint, "minilm")
    index = out / f"index-{version}"
    try:
        ok = read_index_manifest(index).get("model_version") == version
    except Exception:  # noqa: BLE001 - missing: build it
        ok = False
    if not ok:
        print(f"building the index of {args.catalogue} for {version} ...", flush=True)
        build_index(args.catalogue, index, checkpoint=args.checkpoint, encoder="minilm", fmt="bestbuy-products")
    side = Path(args.checkpoint) / CLICK_BLEND_FILE if args.checkpoint else None
    if side is not None and side.is_file():
        return index, BlendWeights.from_dict(json.loads(side.read_text())), f"fitted ({side})"
    w = BlendWeights.zeros()
    names = list(w.to_dict())
    for name, v in HAND_BLEND.items():
        w.weights[names.index(name)] = v
    return index, w, "hand-set (no fitted click_blend.json in the checkpoint; latency does not depend on values)"


def deploy_apps(args, index: Path, url: str, weights) -> None:
    from shoprank.serve_app import server

    serving = {"num_candidates": 100, "max_batch_size": 16, "batch_wait_timeout_s": 0.0,
               "request_timeout_s": 120, "store_timeout_s": args.store_timeout}  # fmt: skip
    base = {"index_dir": str(index), "encoder": "minilm", "ranker_num_cpus": 0.5, "intent_num_cpus": 0.5,
            "retriever_num_cpus": 0.25, "ingress_num_cpus": 0.25, "ingress_max_ongoing_requests": 64,
            "ingress_max_queued_requests": 256, "torch_threads": args.torch_threads}  # fmt: skip
    if args.checkpoint:
        base["checkpoint"] = str(Path(args.checkpoint).resolve())
    server.deploy({**base, "serving": {**serving, "click_blend_weights": weights.to_dict()}, "store_url": url},
                  name="with")  # fmt: skip
    server.deploy({**base, "serving": serving}, name="without")


def markdown(res: dict[str, Any], command: str) -> str:
    ld, s, f = res["load"], res["search"], res["feedback"]
    lines = [
        "# bench/feedback.py — the online store on the request path, Feedback ingest, bulk load (issue 24)", "",
        f"`{command}` ({res['machine']}; model {res['model']}; click blend {res['blend']}). "
        "Raw output: the JSON next to this file.", "",
        "## Search with the store lookups vs without (same app, index and model; real gRPC)", "",
        "| conc. | with p50 / p99 ms | without p50 / p99 ms | p50 with ÷ without (≤ 1.15×) | p99 ratio "
        "| degraded | with signals |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for c in (1, 16):
        r = s[f"c{c}"]
        lines.append(f"| {c} | {r['with']['p50']:.1f} / {r['with']['p99']:.1f} | {r['without']['p50']:.1f} / "
                     f"{r['without']['p99']:.1f} | **{r['p50_ratio']:.2f}×** | {r['p99_ratio']:.2f}× | "
                     f"{r['degraded']} | {r['blended']}/{s['requests']} |")  # fmt: skip
    fl = s["in_process"]
    lines += [
        "", f"{s['requests']} requests a concurrency (the log's newest distinct query/user pairs, k=10), "
        "alternating rounds. The work the `with` app adds, in-process, one request a batch: the store read "
        f"p50 {fl['store_read_p50_ms']:.2f} ms, the whole click step (read, features, blend) p50 "
        f"{fl['click_step_p50_ms']:.2f} ms"
        + (f", so the c1 ratio that work alone implies is {fl['c1_ratio_from_added_work']:.2f}× (the without p50 plus "
           f"it); a ranked batch of 16 (one store round trip): {fl['click_step_batch16_p50_ms']:.1f} ms, on the "
           "ranker replica's CPU, in series with the forward pass" if "c1_ratio_from_added_work" in fl else "")
        + ".", "",
        "## Feedback events/s over gRPC vs a plain pipelined client (same server, same batches)", "",
        "| Feedback over gRPC | plain pipelined client | gRPC ÷ plain (≥ 0.8×) | write script from this process "
        "| health checks through Serve |",
        "| --- | --- | --- | --- | --- |",
        f"| {f['grpc']:,.0f} | {f['plain']:,.0f} | **{f['grpc_over_plain']:.2f}×** | {f['script']:,.0f} "
        f"({f['script_over_plain']:.2f}×) | {f['health_calls']:,.0f} calls/s |", "",
        f"{f['callers']} concurrent callers, batches of {f['batch_events']} log clicks with fresh event ids (every "
        f"one counted), {f['batches_a_round']} batches a round, median of {f['rounds']} alternating rounds. "
        "The plain client writes, per batch in one pipeline without MULTI (about "
        f"{f['plain_commands_a_batch']:.0f} commands): per event `SET e:api:{{id}} 1 NX EX ttl`, "
        "`HINCRBY stats type:click`, and the ops of `shoprank.store.writer.event_ops` as plain commands "
        "(`HINCRBYFLOAT` +1 for each decayed counter, `HINCRBY`, `SADD` for the query/trigram/user sets, `XADD` "
        "to the event stream), then `HINCRBY stats events`. It skips what the write script adds: validation, "
        "the landmark read of each decayed counter, counting an event only when its id is new, and atomicity. "
        "Each of its commands is packed by the client and parsed and answered by the server; the write script "
        "travels as one call with one JSON argument a batch and applies the same ops inside the server. "
        f"Feedback over gRPC ÷ the write script called from this process: {f['grpc'] / f['script']:.2f}× (the share "
        "of Serve's proxy, the ingress and validation); the health checks bound the calls/s Serve itself allows.",
        "", "## Loading the whole shared Best Buy log", "",
        f"`shoprank events load clicks.csv --format bestbuy-clicks --store URL`: {ld['first']['rows_read']:,} rows, "
        f"{ld['first']['events']:,} events counted in {ld['first']['seconds']:.1f} s "
        f"(**{ld['first']['events_per_s']:,.0f} events/s**; the command {ld['first_wall_s']:.1f} s wall with "
        f"its imports). Reload: {ld['reload']['accepted']} counted, {ld['reload']['duplicates']:,} already there "
        f"({ld['reload']['seconds']:.1f} s); key count ({ld['store']['keys']:,}), `stats` and the popularity "
        "counters unchanged (asserted).", "",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer requests and batches")
    p.add_argument("--checkpoint", default=str(REFERENCE) if (REFERENCE / "manifest.json").is_file() else None)
    p.add_argument("--catalogue", type=Path, default=SHARED / "products.xml.zip")
    p.add_argument("--clicks", type=Path, default=SHARED / "clicks.csv")
    p.add_argument("--requests", type=int, default=None, help="Search requests a concurrency (default 240; quick 64)")
    p.add_argument("--rounds", type=int, default=4, help="alternating with/without rounds a concurrency")
    p.add_argument("--batches", type=int, default=None, help="Feedback batches a round (default 60; quick 20)")
    p.add_argument("--batch-events", type=int, default=100)
    p.add_argument("--callers", type=int, default=4, help="concurrent Feedback callers")
    p.add_argument("--feedback-rounds", type=int, default=None, help="default 3; quick 2")
    p.add_argument("--store-timeout", type=float, default=1.0,
                   help="the with app's store_timeout_s (generous: no response cut short)")  # fmt: skip
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray (two apps)")
    p.add_argument("--out", type=Path, default=None, help="results stem (default bench/results/feedback[_quick])")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the stem's .json")
    args = p.parse_args(argv)
    args.requests = args.requests or (64 if args.quick else 240)
    args.batches = args.batches or (20 if args.quick else 60)
    args.feedback_rounds = args.feedback_rounds or (2 if args.quick else 3)
    stem = args.out or REPO / "bench" / "results" / ("feedback_quick" if args.quick else "feedback")
    work = REPO / "out" / "bench" / "feedback"
    work.mkdir(parents=True, exist_ok=True)
    command = "python bench/feedback.py" + (" --quick" if args.quick else "")

    from shoprank.files import atomic_write_json, atomic_write_text

    if args.render:
        atomic_write_text(stem.with_suffix(".md"), markdown(json.loads(stem.with_suffix(".json").read_text()), command))
        return 0
    from shoprank.net import free_port
    from shoprank.ray_runtime import init_ray
    from shoprank.serve_app import server
    from shoprank.store.server import LocalStore

    res: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start",
                           "model": args.checkpoint or "pretrained all-MiniLM-L6-v2",
                           "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    shutil.rmtree(work / "store", ignore_errors=True)  # a fresh store every run
    store = LocalStore(work / "store").start()
    try:
        res["load"] = bench_load(args.clicks, store.url)
        from shoprank.hashing import allow_default_salt

        allow_default_salt("bench/feedback.py")  # unless a salt is set: the hashes only need to agree within this run
        init_ray(num_cpus=args.num_cpus, serve=True)
        index, weights, res["blend"] = prepare_index(args, work)
        port = free_port()
        server.start_serve(port)
        print(f"\n== Search: apps 'with' (store, click blend) and 'without', {index.name} ==", flush=True)
        deploy_apps(args, index, store.url, weights)
        res["search"] = bench_search(args, port, store.url, index, weights)
        print("\n== Feedback ingest ==", flush=True)
        res["feedback"] = bench_feedback(args, port, store.url)
    finally:
        server.shutdown()
        store.stop()
    atomic_write_json(stem.with_suffix(".json"), res, indent=2, default=float)
    atomic_write_text(stem.with_suffix(".md"), markdown(res, command))
    print(f"\nwrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
