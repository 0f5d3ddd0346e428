"""Overload: goodput and latency at concurrency 1, 16, 64 and 256, without and with the ingress's
admission control, side by side in one run.

    python bench/overload.py             # 15 s per level; results to bench/results/overload.{json,md}
    python bench/overload.py --seconds 5 # quicker

One local Ray; the search app over a 2,000-item synthetic catalogue embedded with the pretrained
all-MiniLM-L6-v2 (as ``shoprank serve`` without --index), deployed twice in turn:

- ``serve queue``: admission off (``admission_target_wait_s: 0``) and the ingress's Serve limits of
  before issue 22 (``max_ongoing_requests`` 32, ``max_queued_requests`` 64): Serve's proxy backs off
  a full ingress;
- ``admission``: the defaults (the ingress admits what it can serve within 0.5 s of queueing and
  sheds the rest at once with ``RESOURCE_EXHAUSTED`` and a ``retry-after-ms`` hint).

The client is another process in its own process group (grpc.aio, N concurrent callers in a closed
loop, each with a 10 s deadline sent as ``shoprank-timeout-ms``, as the shipped client does; a shed
caller waits the hinted retry-after, at most 1 s). Goodput = OK answers per second; latency
percentiles are of OK answers; shed latency is the time to a ``RESOURCE_EXHAUSTED``. Targets: goodput
at c64 and c256 >= 0.9x the c16 goodput, p99 <= 3x p50 of admitted requests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 16, 64, 256)
WORDS = ["boots", "winter jacket", "rain coat", "sandals", "wool scarf", "headphones", "garden hose", "kettle",
         "running shoes", "snow boots", "swimsuit", "desk lamp", "backpack", "sunglasses", "gloves"]  # fmt: skip

CLIENT = r"""
import asyncio, json, sys, time, grpc
from shoprank.serving.protos import pb2
port, app, conc, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
words = json.loads(sys.argv[5])
async def main():
    ch = grpc.aio.insecure_channel(f"localhost:{port}")
    call = ch.unary_unary("/shoprank.v1.SearchService/Search", request_serializer=pb2.SearchRequest.SerializeToString,
                          response_deserializer=pb2.SearchResponse.FromString)
    md = [("application", app), ("shoprank-timeout-ms", "10000")]
    ok, shed, other = [], [], {}
    end = time.perf_counter() + seconds
    async def worker(w):
        n = 0
        while time.perf_counter() < end:
            req = pb2.SearchRequest(query=f"{words[(w + n) % len(words)]} {n % 7}", k=10)
            t = time.perf_counter()
            try:
                await call(req, metadata=md, timeout=10)
                ok.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    shed.append(time.perf_counter() - t)
                    hint = dict(e.trailing_metadata() or ()).get("retry-after-ms")
                    await asyncio.sleep(min(1.0, float(hint) / 1000) if hint else 0.1)
                else:
                    other[e.code().name] = other.get(e.code().name, 0) + 1
            n += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    wall = time.perf_counter() - t0
    await ch.close()
    print(json.dumps({"ok": ok, "shed": shed, "other": other, "wall": wall}))
asyncio.run(main())
"""


def pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q)) * 1e3 if xs else float("nan")


def level(port: int, app: str, conc: int, seconds: float) -> dict[str, Any]:
    """One closed-loop level from a client in its own process group."""
    cmd = [sys.executable, "-c", CLIENT, str(port), app, str(conc), str(seconds), json.dumps(WORDS)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, start_new_session=True, timeout=seconds + 120)
    if out.returncode != 0:
        sys.exit(f"client failed:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"concurrency": conc, "goodput": len(r["ok"]) / r["wall"], "ok": len(r["ok"]), "shed": len(r["shed"]),
            "other": r["other"], "p50_ms": pct(r["ok"], 50), "p99_ms": pct(r["ok"], 99),
            "shed_p50_ms": pct(r["shed"], 50)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per concurrency level (default 15)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/overload")
    args = ap.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"})
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.hashing import allow_default_salt
    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.build import build_index
    from shoprank.retrieval.synthetic import catalogue
    from shoprank.serve_app import server

    allow_default_salt("bench/overload.py")
    phases = {
        "serve queue": {"serving": {"admission_target_wait_s": 0}, "ingress_max_ongoing_requests": 32,
                        "ingress_max_queued_requests": 64},
        "admission": {},
    }  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="overload_") as tmp:
        cat = Path(tmp) / "catalogue.parquet"
        catalogue(2000).write_parquet(cat)
        init_ray(serve=True, _temp_dir=str(Path(tmp) / "ray"))
        build_index(cat, Path(tmp) / "index")
        port = server.start_serve()
        try:
            for name, extra in phases.items():
                app = name.replace(" ", "-")
                server.deploy({"index_dir": str(Path(tmp) / "index"), **extra}, name=app)
                level(port, app, 4, 3.0)  # warm-up
                results[name] = []
                for c in LEVELS:
                    r = level(port, app, c, args.seconds)
                    print(f"{name:12s} c{c:<4d} goodput {r['goodput']:6.1f}/s p50 {r['p50_ms']:7.1f} ms "
                          f"p99 {r['p99_ms']:7.1f} ms shed {r['shed']:6d} other {r['other']}", flush=True)  # fmt: skip
                    results[name].append(r)
                from ray import serve

                serve.delete(app)
        finally:
            server.shutdown()
    head = "| phase | concurrency | goodput (req/s) | x c16 | p50 ms | p99 ms | p99/p50 | shed | shed p50 ms | other |"
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, rs in results.items():
        c16 = next(r["goodput"] for r in rs if r["concurrency"] == 16)
        for r in rs:
            rows.append(f"| {name} | {r['concurrency']} | {r['goodput']:.1f} | {r['goodput'] / c16:.2f} | "
                        f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['p99_ms'] / r['p50_ms']:.1f} | {r['shed']} | "
                        f"{r['shed_p50_ms']:.0f} | {r['other'] or '-'} |")  # fmt: skip
    atomic_write_json(args.out.with_suffix(".json"), {"seconds": args.seconds, "phases": results}, indent=1)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join([
        f"# Overload: goodput and latency by concurrency (`python bench/overload.py --seconds {args.seconds:g}`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2-core machine, client in its own process "
        "group on the same machine; pretrained MiniLM over a 2,000-item synthetic catalogue. `serve queue`: "
        "admission off, ingress max_ongoing 32 / queued 64 (before); `admission`: the defaults.", "", *rows, "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
