"""A compressed request bomb against Serve's gRPC proxy: the proxy's peak memory vs idle, with the
request-size limit (shoprank's default) and without it (Serve's own 2 GiB cap), side by side in one run.

    python bench/bomb.py            # results to bench/results/bomb.{json,md}

Each phase starts its own local Ray (the environment decides the proxy's limits, as in production),
deploys the search app over a small synthetic catalogue (tiny encoder), and then, from a client in
another process: a normal Search (baseline), a ~200 KiB gzip message that inflates to 200 MiB (a
``SearchRequest`` whose query is 200 MiB of one letter), a plain request of 3x the limit, and a normal
Search again (still serving). The proxy's RSS is sampled every 10 ms while each call runs: peak - idle.

Phases: ``limit`` = shoprank's settings (``$SHOPRANK_MAX_REQUEST_BYTES`` 1 MiB; gRPC's cap at twice
that), ``no limit`` = ``RAY_SERVE_GRPC_MAX_MESSAGE_SIZE`` at Serve's default 2 GiB and the app's limit
at its 256 MiB maximum (what the proxy did before issue 21).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BOMB_BYTES = 200 << 20
PHASES: dict[str, dict[str, str]] = {
    "limit": {},
    "no limit": {"SHOPRANK_MAX_REQUEST_BYTES": str(256 << 20), "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(2**31 - 1)},
}

CLIENT = r"""
import json, sys, time, gzip, grpc
from shoprank.serving.protos import pb2
port, app, kind, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ch = grpc.insecure_channel(f"localhost:{port}", options=[("grpc.max_send_message_length", -1)])
call = ch.unary_unary("/shoprank.v1.SearchService/Search")
req = pb2.SearchRequest(query="boots" if kind == "normal" else "a" * size, k=5).SerializeToString()
opts = {"compression": grpc.Compression.Gzip} if kind == "bomb" else {}
t0 = time.perf_counter()
try:
    call(req, metadata=[("application", app)], timeout=120, **opts); code, msg = "OK", ""
except grpc.RpcError as e:
    code, msg = e.code().name, (e.details() or "")[:160]
print(json.dumps({"code": code, "message": msg, "seconds": time.perf_counter() - t0,
                  "wire_bytes": len(gzip.compress(req)) if kind == "bomb" else len(req)}))
"""


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def call_watching(pid: int, port: int, app: str, kind: str, size: int) -> dict[str, Any]:
    """Run one client call in another process while sampling the proxy's RSS: its result and the peak."""
    peak, done = [_rss(pid)], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(_rss(pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out = subprocess.run([sys.executable, "-c", CLIENT, str(port), app, kind, str(size)],
                         capture_output=True, text=True, check=True, cwd=REPO)  # fmt: skip
    done.set()
    t.join()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    time.sleep(1.0)
    return {**res, "peak_rss_mb": max(peak) / 2**20, "after_rss_mb": _rss(pid) / 2**20}


def phase(name: str, index: Path, tmp: Path) -> dict[str, Any]:
    """One Ray + Serve with the phase's environment (set before Ray starts), then the calls."""
    from shoprank.ray_runtime import init_ray
    from shoprank.request_limits import max_request_bytes
    from shoprank.serve_app import server
    from shoprank.serve_app.processes import proxy_pids

    init_ray(num_cpus=2, serve=True, _temp_dir=str(tmp / f"ray_{name.replace(' ', '_')}"))
    port = server.start_serve()
    app = "bomb"
    server.deploy({"index_dir": str(index), "encoder": "tiny", "ranker_num_cpus": 0.25, "intent_num_cpus": 0.25,
                   "retriever_num_cpus": 0.1, "ingress_num_cpus": 0.1}, name=app)  # fmt: skip
    (pid,) = proxy_pids()
    limit = max_request_bytes()
    calls = {"normal": call_watching(pid, port, app, "normal", 0)}
    idle = _rss(pid) / 2**20
    calls["bomb"] = call_watching(pid, port, app, "bomb", BOMB_BYTES)
    calls["3x limit"] = call_watching(pid, port, app, "plain", 3 * min(limit, 1 << 20))
    calls["normal after"] = call_watching(pid, port, app, "normal", 0)
    server.shutdown()
    return {"limit_bytes": limit, "grpc_cap_bytes": int(os.environ["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"]),
            "idle_rss_mb": idle, "calls": calls}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/bomb")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal: run one phase, print JSON
    ap.add_argument("--index", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "SHOPRANK_ID_SALT": "bench-bomb"})
    if args.phase:
        os.environ.update(PHASES[args.phase])
        with tempfile.TemporaryDirectory(prefix="bomb_") as tmp:
            print("RESULT " + json.dumps(phase(args.phase, args.index, Path(tmp))))
        return
    from shoprank.files import atomic_write_json, atomic_write_text
    from shoprank.retrieval.build import build_index
    from shoprank.retrieval.synthetic import catalogue

    with tempfile.TemporaryDirectory(prefix="bomb_") as tmp:
        cat = Path(tmp) / "catalogue.parquet"
        catalogue(300).write_parquet(cat)
        build_index(cat, Path(tmp) / "index", encoder="tiny")
        results = {}
        for name in PHASES:  # each phase in its own process: Serve reads its limits when its processes start
            out = subprocess.run([sys.executable, __file__, "--phase", name, "--index", str(Path(tmp) / "index")],
                                 capture_output=True, text=True, cwd=REPO)  # fmt: skip
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"phase {name!r} failed:\n{out.stderr[-3000:]}")
            results[name] = json.loads(line[len("RESULT ") :])
    rows = ["| phase | call | wire bytes | code | seconds | proxy peak - idle (MB) | after - idle (MB) |",
            "|---|---|---:|---|---:|---:|---:|"]  # fmt: skip
    for name, r in results.items():
        idle = r["idle_rss_mb"]
        for call, c in r["calls"].items():
            rows.append(f"| {name} | {call} | {c['wire_bytes']:,} | {c['code']} | {c['seconds']:.2f} | "
                        f"{c['peak_rss_mb'] - idle:.0f} | {c['after_rss_mb'] - idle:.0f} |")  # fmt: skip
    lim, nol = results["limit"]["calls"]["bomb"], results["no limit"]["calls"]["bomb"]
    growth = (
        lim["peak_rss_mb"] - results["limit"]["idle_rss_mb"],
        nol["peak_rss_mb"] - results["no limit"]["idle_rss_mb"],
    )
    summary = (f"Bomb ({BOMB_BYTES >> 20} MiB inflated from {lim['wire_bytes']:,} bytes): with the limit "
               f"{lim['code']} in {lim['seconds']:.2f} s, proxy peak +{growth[0]:.0f} MB over idle (target < 100 MB); "
               f"without it {nol['code']} in {nol['seconds']:.2f} s, +{growth[1]:.0f} MB "
               f"({growth[1] / max(growth[0], 1):.0f}x the limited peak).")  # fmt: skip
    print(summary)
    atomic_write_json(args.out.with_suffix(".json"), {"bomb_bytes": BOMB_BYTES, "phases": results}, indent=1)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join([
        "# Compressed request bomb vs Serve's gRPC proxy (`python bench/bomb.py`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2-core machine. Client in another process; "
        "proxy RSS sampled every 10 ms during each call. `limit`: shoprank's request limit "
        f"({results['limit']['limit_bytes']:,} bytes; gRPC's cap {results['limit']['grpc_cap_bytes']:,}); "
        "`no limit`: Serve's default 2 GiB cap (before issue 21).", "", summary, "", *rows, "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
