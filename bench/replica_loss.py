"""Replica loss: a MultiTaskRanker replica killed (SIGKILL) under concurrency-16 Search load, with one
ranker replica and with two, side by side in one run.

    python bench/replica_loss.py        # results to bench/results/replica_loss.{json,md}

One local Ray; the search app over a 2,000-item synthetic catalogue embedded with the pretrained
all-MiniLM-L6-v2. The client is another process in its own process group: 16 callers in a closed
loop over grpc.aio with the shipped client's channel options (``SearchClient``'s retry policy:
UNAVAILABLE retried up to 3 attempts) and a 10 s deadline. After ``--before`` seconds the bench kills
one ranker replica's process; the load runs on for ``--after`` seconds. Reported: calls by final
status code, and the longest gap between consecutive successful answers from the kill to the end
(target: 0 INTERNAL, gap <= 1 s with two replicas).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

CLIENT = r"""
import asyncio, json, sys, time, grpc
from shoprank.serving.protos import pb2
from shoprank.serving.client import RETRY_SERVICE_CONFIG
port, app, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
async def main():
    ch = grpc.aio.insecure_channel(f"localhost:{port}", options=[("grpc.enable_retries", 1),
                                   ("grpc.service_config", RETRY_SERVICE_CONFIG)])
    call = ch.unary_unary("/shoprank.v1.SearchService/Search", request_serializer=pb2.SearchRequest.SerializeToString,
                          response_deserializer=pb2.SearchResponse.FromString)
    md = [("application", app), ("shoprank-timeout-ms", "10000")]
    calls = []
    t0 = time.time(); end = time.perf_counter() + seconds
    async def worker(w):
        n = 0
        while time.perf_counter() < end:
            s = time.time()
            try:
                await call(pb2.SearchRequest(query=f"boots {w} {n % 9}", k=10), metadata=md, timeout=10)
                code = "OK"
            except grpc.aio.AioRpcError as e:
                code = e.code().name
            calls.append((s, time.time(), code)); n += 1
    await asyncio.gather(*(worker(w) for w in range(16)))
    await ch.close()
    print(json.dumps(calls))
asyncio.run(main())
"""


def phase(port: int, app: str, before: float, after: float) -> dict[str, Any]:
    cmd = [sys.executable, "-c", CLIENT, str(port), app, str(before + after)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)  # fmt: skip
    time.sleep(before)
    from shoprank.serve_app.processes import replica_pids

    pids = replica_pids(app, "MultiTaskRanker")
    killed = time.time()
    os.kill(pids[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=before + after + 120)
    if proc.returncode != 0:
        sys.exit(f"client failed:\n{err[-2000:]}")
    calls = json.loads(out.strip().splitlines()[-1])
    codes: dict[str, int] = {}
    for _, _, code in calls:
        codes[code] = codes.get(code, 0) + 1
    ok_ends = sorted(e for _, e, c in calls if c == "OK" and e >= killed)
    marks = [killed, *ok_ends]
    gap = max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=float("inf"))
    return {"replicas": len(pids), "calls": len(calls), "codes": codes, "longest_gap_s": gap,
            "ok_after_kill": len(ok_ends)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=float, default=5.0, help="seconds of load before the kill (default 5)")
    ap.add_argument("--after", type=float, default=20.0, help="seconds of load after it (default 20)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/replica_loss")
    args = ap.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"})
    from ray import serve
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.hashing import allow_default_salt
    from shoprank.ray_runtime import init_ray
    from shoprank.retrieval.build import build_index
    from shoprank.retrieval.synthetic import catalogue
    from shoprank.serve_app import server

    allow_default_salt("bench/replica_loss.py")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="replica_loss_") as tmp:
        cat = Path(tmp) / "catalogue.parquet"
        catalogue(2000).write_parquet(cat)
        init_ray(num_cpus=4, serve=True, _temp_dir=str(Path(tmp) / "ray"))  # 4 logical CPUs: room for 2 rankers
        build_index(cat, Path(tmp) / "index")
        port = server.start_serve()
        try:
            for n in (1, 2):
                app = f"loss{n}"
                server.deploy({"index_dir": str(Path(tmp) / "index"), "ranker_num_replicas": n}, name=app)
                r = phase(port, app, args.before, args.after)
                print(f"{n} ranker replica(s): {r['calls']} calls {r['codes']}, longest gap without a successful "
                      f"answer after the kill {r['longest_gap_s']:.2f} s", flush=True)  # fmt: skip
                results[f"{n} replica(s)"] = r
                serve.delete(app)
        finally:
            server.shutdown()
    rows = ["| ranker replicas | calls | by code | longest gap after the kill (s) |", "|---:|---:|---|---:|"]
    for r in results.values():
        rows.append(f"| {r['replicas']} | {r['calls']} | {r['codes']} | {r['longest_gap_s']:.2f} |")
    atomic_write_json(args.out.with_suffix(".json"), {"args": {"before": args.before, "after": args.after},
                                                      "phases": results}, indent=1)  # fmt: skip
    atomic_write_text(args.out.with_suffix(".md"), "\n".join([
        "# Replica loss under load (`python bench/replica_loss.py`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2-core machine. A MultiTaskRanker replica "
        f"killed (SIGKILL) after {args.before:g} s of concurrency-16 Search load; {args.after:g} s more load. "
        "Client in its own process group with the shipped client's retry policy.", "", *rows, "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
