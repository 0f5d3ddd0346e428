"""Multi-node behaviour on one machine, run as a SUBPROCESS by tests/test_multinode.py.

It starts its own ``ray.cluster_utils.Cluster`` (never the session's local Ray):

    head    CPU node (num_cpus=2): driver, Serve controller + proxy, batch work
    gpu_a   "GPU" node: num_cpus=1 and the custom resource {"ranker_gpu": 1}
    gpu_b   added later, the replacement when gpu_a is lost

and checks, writing every observation to a JSON file for the test to assert on:

1. an actor asking for {"ranker_gpu": 1} lands on gpu_a;
2. Ray Data ``map_batches`` (its default SPREAD scheduling) scores (query, item) pairs on more than one node,
   with the exported shoprank ranker (the same NumPy forward pass Triton serves);
3. a Serve ranker deployment (replica resources {"ranker_gpu": 1}) lands on gpu_a; a client
   keeps sending requests while gpu_a is killed (no graceful shutdown): the replica restarts
   on gpu_b, requests continue, and every answer is checked against the expected scores.

Usage: python tests/multinode_scenario.py MODEL_DIR DATA_NPZ OUT_JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

TOL = 1e-5


def main(model_dir: str, data_path: str, out_path: str) -> int:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from shoprank.ray_runtime import init_ray

    report: dict = {"events": []}

    def event(msg: str) -> None:
        report["events"].append([round(time.monotonic() - t0, 2), msg])
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    t0 = time.monotonic()
    data = np.load(data_path)
    queries, items, num, month, expected = (data[k] for k in ("queries", "items", "num", "month", "expected"))
    tasks = [str(t) for t in data["tasks"]]

    # fast detection of a dead node; no idle workers started ahead of need (2-core CI machines)
    system_config = {
        "health_check_period_ms": 500,
        "health_check_failure_threshold": 3,
        "health_check_timeout_ms": 500,
        "enable_worker_prestart": False,
        "prestart_worker_first_driver": False,
    }
    for attempt in range(3):  # Ray gives a node 30 s to register: a busy machine may need another go
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 2, "include_dashboard": False, "_system_config": system_config},
            )
            gpu_a = cluster.add_node(num_cpus=1, resources={"ranker_gpu": 1})
            cluster.wait_for_nodes(timeout=120)
            break
        except Exception as e:  # noqa: BLE001 - retried, then re-raised
            event(f"cluster start failed ({e}); attempt {attempt + 1}")
            with contextlib.suppress(Exception):
                cluster.shutdown()
            if attempt == 2:
                raise
    init_ray(cluster.address, with_runtime_env=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    head_id = cluster.head_node.node_id
    report["nodes"] = {"head": head_id, "gpu_a": gpu_a.node_id}
    event("cluster up")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        # 1. placement of a ranker_gpu actor
        @ray.remote(num_cpus=0, resources={"ranker_gpu": 1})
        class Probe:
            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        probe = Probe.remote()
        report["actor_node"] = ray.get(probe.node.remote(), timeout=60)
        ray.kill(probe)
        event("actor placed")

        # 2. batch scoring spreads over nodes (Ray Data map_batches)
        def score_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            from shoprank.triton.backend.numpy_ranker import NumpyRanker

            ranker = NumpyRanker.load(model_dir)
            d = np.load(data_path)
            qi, ii = batch["q"], batch["i"]
            out = ranker.pair_outputs(d["queries"][qi], d["items"][ii], d["num"][ii], d["month"][ii])
            time.sleep(0.1)  # long enough for the scheduler to use every node
            node = ray.get_runtime_context().get_node_id()
            return {"q": qi, "i": ii, "node": np.array([node] * len(qi)), **{f"s_{t}": out[t] for t in out}}

        nq, ni = queries.shape[0], items.shape[0]
        pairs = [{"q": q, "i": i} for q in range(nq) for i in range(ni)]
        # Ray Data schedules map tasks with its default SPREAD strategy (DataContext)
        ds = ray.data.from_items(pairs, override_num_blocks=4).map_batches(
            score_batch, batch_size=max(1, len(pairs) // 4), num_cpus=1
        )
        rows = ds.take_all()
        wrong = sum(
            1 for r in rows for k, t in enumerate(tasks) if abs(r[f"s_{t}"] - expected[r["q"], k, r["i"]]) > TOL
        )
        report["batch"] = {"rows": len(rows), "wrong": wrong, "nodes": sorted({r["node"] for r in rows})}
        event(f"batch scored on {len(report['batch']['nodes'])} nodes")

        # 3. Serve survives the loss of the ranker node
        @serve.deployment(
            num_replicas=1,
            ray_actor_options={"num_cpus": 0, "resources": {"ranker_gpu": 1}},
            # A check each second finds the dead replica at once (its node is gone); the generous
            # timeout keeps a busy machine's slow but live replacement from being taken for dead.
            health_check_period_s=1,
            health_check_timeout_s=10,
            graceful_shutdown_timeout_s=1,
        )
        class Ranker:
            def __init__(self, model_dir: str, data_path: str) -> None:
                from shoprank.triton.backend.numpy_ranker import NumpyRanker

                self.ranker = NumpyRanker.load(model_dir)
                self.data = dict(np.load(data_path))
                self.node = ray.get_runtime_context().get_node_id()

            def __call__(self, qidx: int) -> dict:
                d = self.data
                out = self.ranker.pair_outputs(d["queries"][qidx], d["items"], d["num"], d["month"])
                return {"node": self.node, "scores": {t: v.tolist() for t, v in out.items()}}

        serve.start(proxy_location="Disabled")  # requests go through a DeploymentHandle
        handle = serve.run(Ranker.bind(model_dir, data_path), name="multinode", route_prefix=None)
        event("serve up")
        results: list[dict] = []

        def client() -> None:
            # Bounded by time, not by a request count: on a busy machine adding gpu_b can take
            # long enough that a fixed count ran out before gpu_a was even killed.
            k, t_end = 0, time.monotonic() + 300
            while not stop.is_set() and time.monotonic() < t_end:
                qidx = k % nq
                k += 1
                t = time.monotonic() - t0
                try:
                    resp = handle.remote(qidx).result(timeout_s=10)
                except Exception as e:  # noqa: BLE001 - every failure is recorded, none is hidden
                    results.append({"t": t, "done": time.monotonic() - t0, "ok": False, "error": type(e).__name__})
                    time.sleep(0.05)
                    continue
                got = np.array([resp["scores"][name] for name in tasks])
                right = bool(np.abs(got - expected[qidx]).max() <= TOL)
                done = time.monotonic() - t0
                results.append({"t": t, "done": done, "ok": True, "right": right, "node": resp["node"]})
                time.sleep(0.02)

        th = threading.Thread(target=client, daemon=True)
        threads.append(th)
        th.start()
        time.sleep(1.5)
        gpu_b = cluster.add_node(num_cpus=1, resources={"ranker_gpu": 1})
        report["nodes"]["gpu_b"] = gpu_b.node_id
        event("gpu_b added (spare)")
        t_kill = time.monotonic() - t0
        cluster.remove_node(gpu_a, allow_graceful=False)
        event("gpu_a killed")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum(1 for r in results if r["ok"] and r.get("node") == gpu_b.node_id) >= 10:
                break
            time.sleep(0.2)
        stop.set()
        th.join(30)
        event("client stopped")
        after = [r for r in results if r["t"] > t_kill]
        first_b = next((r["done"] for r in after if r["ok"] and r.get("node") == gpu_b.node_id), None)
        report["serve"] = {
            "t_kill": t_kill,
            "requests": len(results),
            "ok": sum(r["ok"] for r in results),
            "wrong": sum(1 for r in results if r["ok"] and not r["right"]),
            "failed": [r for r in results if not r["ok"]],
            "before_kill_nodes": sorted({r["node"] for r in results if r["ok"] and r["t"] < t_kill}),
            "after_kill_nodes": sorted({r["node"] for r in after if r["ok"]}),
            "ok_on_gpu_b": sum(1 for r in after if r["ok"] and r.get("node") == gpu_b.node_id),
            "recovery_s": None if first_b is None else first_b - t_kill,  # kill -> first answer from gpu_b
            "max_latency_s": max((r["done"] - r["t"] for r in results), default=0.0),
        }
        # The controller's view and the live nodes, for the test's failure message.
        with contextlib.suppress(Exception):
            report["serve_status"] = {
                d: {"status": str(ds.status), "message": ds.message, "replicas": dict(ds.replica_states)}
                for app in serve.status().applications.values()
                for d, ds in app.deployments.items()
            }
        with contextlib.suppress(Exception):
            report["alive_nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        serve.shutdown()
    except BaseException as e:
        import traceback

        report["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        sys.stderr.flush()
        raise
    finally:
        stop.set()
        for th in threads:  # never touch Ray from another thread after ray.shutdown()
            th.join(30)
        Path(out_path).write_text(json.dumps(report, indent=2))
        ray.shutdown()
        cluster.shutdown()
        event("cluster down")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    raise SystemExit(main(*sys.argv[1:4]))
