"""Served vs offline on the shared Best Buy log: ``shoprank replay`` against ``shoprank eval --clicks``.

    python bench/replay_parity.py                      # runs/reference/model, the whole test period
    python bench/replay_parity.py --checkpoint DIR --limit 300

In one run, on the Best Buy click log cut by time as ``shoprank eval --clicks`` cuts it (the
checkpoint's split fractions; the newest clicks are the test period):

1. ``evaluate_clicks(write_blend=True)``: eval's learned-blend MAP@5 on the test clicks, its lists,
   and the fitted blend written into the checkpoint (``click_blend.json``: what the server reads);
2. the history (eval's train + val clicks) written as a Best Buy file and loaded into a fresh local
   store (``events load``; load time and events/s reported), the test clicks as another file;
3. the checkpoint served by Ray Serve over an index of the catalogue built by the index job, and
   the test period replayed over gRPC (``shoprank.serving.replay``: Search per click in time order,
   k=5, month from its time, then the click as Feedback), for each serving set-up:
   - ``parity``: the store + the fitted blend, ``num_candidates`` = the catalogue's size (retrieval
     hands the ranker every item, as eval ranks the whole catalogue);
   - ``default``: the store + the fitted blend with the default ``num_candidates`` (200);
   - ``no_store``: the server's default model blend, no store (what a search service got before).
Each set-up gets its own fresh store loaded with the same history. Printed and written to
``bench/results/replay_parity.{json,md}``: MAP@5 and recall@5 per set-up, the difference to eval's
(target: parity within 0.005; served MAP@5 >= 0.78), how many served lists equal eval's exactly,
errors by code, latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
SHARED = REPO.parent / "shared" / "data" / "bestbuy"


def setups(n_items: int) -> dict[str, dict[str, Any]]:
    return {
        "parity": {"store": True, "serving": {"num_candidates": min(n_items, 10_000)}},
        "default": {"store": True, "serving": {}},
        "no_store": {"store": False, "serving": {}},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "runs/reference/model")
    ap.add_argument("--clicks", type=Path, default=SHARED / "clicks.csv")
    ap.add_argument("--catalogue", type=Path, default=SHARED / "products.xml.zip")
    ap.add_argument("--work", type=Path, default=REPO / "out/replay_parity", help="index, stores, split files")
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N test clicks (quick look)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="set-ups to run (default: all); the others are kept from the last run's JSON")  # fmt: skip
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/replay_parity")
    args = ap.parse_args(argv)
    for p in (args.checkpoint / "manifest.json", args.clicks, args.catalogue):
        if not p.exists():
            print(f"replay_parity: {p} not found (needs ../shared/data/bestbuy and a checkpoint)", file=sys.stderr)
            return 2

    from shoprank.data import loaders
    from shoprank.data.sources.bestbuy import load_bestbuy_clicks, write_bestbuy_clicks
    from shoprank.eval import metrics as M
    from shoprank.eval.runner import catalogue_items, click_log_split, evaluate_clicks
    from shoprank.model.checkpoint import load_checkpoint
    from shoprank.net import free_port
    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.build import build_index
    from shoprank.serve_app import server
    from shoprank.serving.client import SearchClient
    from shoprank.serving.replay import read_clicks, replay
    from shoprank.store.load import load_events
    from shoprank.store.server import LocalStore
    from shoprank.tasks.config import SplitConfig

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("# eval --clicks --write-blend ...", file=sys.stderr)
    ev_out = evaluate_clicks(args.checkpoint, args.clicks, args.catalogue, write_blend=True, keep_lists=True)
    eval_s = time.perf_counter() - t0
    print(f"# eval: {ev_out['system']} map@5 {ev_out['map@5']:.4f} ({eval_s:.0f} s)", file=sys.stderr)

    # eval's split, as files: history for the store, the test period for the replay (time order)
    _, manifest = load_checkpoint(args.checkpoint, "cpu")
    split = SplitConfig.model_validate(manifest.get("train_config", {}).get("split", {}))
    events = load_bestbuy_clicks(args.clicks, raw_users=True).frames["events"]
    items = catalogue_items(loaders.load(args.catalogue, "bestbuy-products").frames["catalogue"])
    _, history, test = click_log_split(events, items, split)
    order = test.with_row_index("__row").sort("timestamp", maintain_order=True)["__row"].to_list()
    order = order[: args.limit] if args.limit else order
    write_bestbuy_clicks(history, work / "history.csv")
    write_bestbuy_clicks(test[order], work / "test.csv")
    wanted = [ev_out["lists"][r] for r in order]
    rows, _ = read_clicks(work / "test.csv")
    clicked = [[r.item_id] for r in rows]
    eval_map = M.map_at_k(clicked, wanted, 5)  # eval's MAP@5 over the replayed clicks (all of them: eval's)

    from shoprank.hashing import allow_default_salt

    allow_default_salt("bench/replay_parity.py")  # unless a salt is set: the hashes only need to agree within this run
    init_ray(num_cpus=os.cpu_count(), serve=True)
    index = work / "index"
    if not (index / "manifest.json").is_file():
        build_index(args.catalogue, index, checkpoint=str(args.checkpoint), fmt="bestbuy-products")
    port = free_port()
    server.start_serve(port)
    results: dict[str, Any] = {}
    earlier = args.out.with_suffix(".json")
    if args.only and earlier.is_file():  # keep the other set-ups of the last full run
        results = {n: r for n, r in json.loads(earlier.read_text())["setups"].items() if n not in args.only}
    for name, setup in setups(items.height).items():
        if args.only and name not in args.only:
            continue
        app: dict[str, Any] = {"index_dir": str(index), "checkpoint": str(args.checkpoint.resolve()),
                               "serving": {"request_timeout_s": 60, **setup["serving"]}}  # fmt: skip
        store = None
        if setup["store"]:
            store = LocalStore(work / f"store_{name}").start()
            redis_flush(store.url)
            t1 = time.perf_counter()
            loaded = load_events(work / "history.csv", "bestbuy-clicks", store.url)
            load_s = time.perf_counter() - t1
            app["store_url"] = store.url
        server.deploy(app, name="shoprank")
        with SearchClient(f"localhost:{port}", timeout=60) as client:
            t2 = time.perf_counter()
            report = replay(client, rows, k=5, feedback=setup["store"])
            replay_s = time.perf_counter() - t2
        got = report.to_dict()
        pairs = list(zip(report.lists, wanted, report.degraded_at, strict=True))
        same = sum(a == b for a, b, _ in pairs)
        same_blended = sum(a == b for a, b, d in pairs if not d)  # the degraded ones are the model's lists
        results[name] = {
            **{k: got[k] for k in ("map@5", "recall@5", "requests", "errors", "latency_ms", "degraded", "signals")},
            "map@5_minus_eval": got["map@5"] - eval_map,
            "lists_equal_to_eval": same,
            "lists_equal_when_not_degraded": f"{same_blended}/{sum(not d for _, _, d in pairs)}",
            "serving": app["serving"],
            "replay_s": replay_s,
            "run_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **({"history_load": {**loaded.to_dict(), "seconds": load_s}} if store else {}),
        }
        print(f"# {name}: map@5 {got['map@5']:.4f} (eval {eval_map:.4f}), {same}/{len(rows)} lists equal, "
              f"errors {got['errors']}, p50 {got['latency_ms']['p50']:.1f} ms", file=sys.stderr)  # fmt: skip
        if store is not None:
            store.stop()
    server.shutdown()
    out = {
        "checkpoint": str(args.checkpoint),
        "clicks": str(args.clicks),
        "split": "time (the checkpoint's fractions): history = train + val clicks, replayed = test clicks",
        "history_clicks": history.height,
        "test_clicks": test.height,
        "replayed_clicks": len(rows),
        "catalogue_items": items.height,
        "eval": {"system": ev_out["system"], "map@5": ev_out["map@5"], "map@5_replayed": eval_map,
                 "recall@100": ev_out["recall@100"], "seconds": eval_s},  # fmt: skip
        "setups": results,
    }
    write(out, args.out)
    print(json.dumps({n: {"map@5": r["map@5"], "lists_equal": r["lists_equal_to_eval"]} for n, r in results.items()}))
    return 0


def redis_flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushall()


def write(out: dict[str, Any], stem: Path) -> None:
    from shoprank.files import atomic_write_json, atomic_write_text

    atomic_write_json(stem.with_suffix(".json"), out, indent=1)
    ev = out["eval"]
    lines = [
        "# Served vs offline: `shoprank replay` against `shoprank eval --clicks` (Best Buy, time split)",
        "",
        f"`python bench/replay_parity.py` — checkpoint `{out['checkpoint']}`; history {out['history_clicks']} "
        f"clicks loaded with `events load`; {out['replayed_clicks']} test clicks replayed over gRPC in time order "
        f"(Search k=5 with the click's month and user, then the click as Feedback); catalogue "
        f"{out['catalogue_items']} items. Split: {out['split']}.",
        "",
        f"eval (`{ev['system']}`): MAP@5 {ev['map@5']:.4f} on the test clicks "
        f"({ev['map@5_replayed']:.4f} on the replayed ones).",
        "",
        "| set-up | serving | MAP@5 | minus eval | recall@5 | lists = eval's | (not degraded) | errors | degraded | "
        "p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["setups"].items():
        lines.append(
            f"| {name} | {json.dumps(r['serving'])} | {r['map@5']:.4f} | {r['map@5_minus_eval']:+.4f} | "
            f"{r['recall@5']:.4f} | {r['lists_equal_to_eval']}/{r['requests']} | "
            f"{r['lists_equal_when_not_degraded']} | {r['errors'] or 0} | "
            f"{r['degraded']} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p99']:.1f} |"
        )
    lines += ["", "A degraded response (the store read over `serving.store_timeout_s`, default 50 ms, on a busy "
              "machine) is the model's own list, so it differs from eval's; `(not degraded)` counts the rest. "
              "`default` serves `num_candidates` 200: the model ranking the blend reads is over retrieval's top 200, "
              "not the whole catalogue, so lists differ where that changes the model's top 100."]
    loads = [r["history_load"] for r in out["setups"].values() if "history_load" in r]
    if loads:
        h = loads[0]
        lines += ["", f"History load (`events load`, fresh store): {h.get('events', '?')} events in "
                  f"{h['seconds']:.1f} s."]  # fmt: skip
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
