"""Real health and replica loss (issue 22 items 2 and 3), over a real gRPC socket.

- ``Check`` reflects the whole graph: SERVING with every deployment and the store answering;
  NOT_SERVING while the store is down; SERVING again once it is back; ``Watch`` streams the changes.
- A ranker replica killed (SIGKILL) under concurrent Search load, with two ranker replicas: no call
  ends in INTERNAL or UNKNOWN (the ingress retries once on the other replica, the shipped client
  retries UNAVAILABLE), and the graph keeps answering.
- A saturated graph (admission letting one request in at a time) sheds a burst at once with
  RESOURCE_EXHAUSTED and a retry-after-ms hint.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shoprank.serving.client import SearchClient, SearchError
from shoprank.serving.protos import pb2
from shoprank.store.server import LocalStore

from tests.serving_helpers import deploy_tiny, indexed_catalogue

APP = "health"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def app(ray_local, tmp_path_factory):
    from ray import serve

    tmp = tmp_path_factory.mktemp("health")
    indexed_catalogue(tmp)
    store = LocalStore(tmp / "store").start()
    port = deploy_tiny(tmp / "index", APP, store_url=store.url, ranker_num_replicas=2,
                       serving={"request_timeout_s": 60})  # fmt: skip
    channel = grpc.insecure_channel(f"localhost:{port}")
    yield {"port": port, "store": store, "health": health_pb2_grpc.HealthStub(channel), "index": tmp / "index"}
    channel.close()
    serve.delete(APP)
    store.stop()


def check(app) -> int:
    return app["health"].Check(health_pb2.HealthCheckRequest(), metadata=[("application", APP)], timeout=30).status


def wait_status(app, want: int, timeout_s: float = 60) -> int:
    deadline, got = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        got = check(app)
        if got == want:
            return got
        time.sleep(0.5)
    return got


def test_readiness_follows_the_store_and_watch_streams_it(app) -> None:
    assert wait_status(app, SERVING) == SERVING
    seen: list[int] = []
    stream = app["health"].Watch(health_pb2.HealthCheckRequest(), metadata=[("application", APP)], timeout=120)

    def read() -> None:
        try:
            for msg in stream:
                seen.append(msg.status)
        except grpc.RpcError:
            pass  # cancelled below

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    store = app["store"]
    try:
        store.kill()
        assert wait_status(app, NOT_SERVING) == NOT_SERVING
    finally:
        store.start()  # same dir and port
    assert wait_status(app, SERVING) == SERVING
    deadline = time.monotonic() + 30
    while seen[-1:] != [SERVING] or NOT_SERVING not in seen:
        assert time.monotonic() < deadline, seen
        time.sleep(0.5)
    stream.cancel()
    assert seen[0] == SERVING and seen.index(NOT_SERVING) > 0  # the first message, then each change


def test_unknown_service_is_not_found(app) -> None:
    with pytest.raises(grpc.RpcError) as e:
        app["health"].Check(health_pb2.HealthCheckRequest(service="nope"), metadata=[("application", APP)], timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def _ranker_pids() -> list[int]:
    from shoprank.serve_app.processes import replica_pids

    return replica_pids(APP, "MultiTaskRanker")


def test_losing_a_ranker_replica_costs_no_call_an_internal_error(app) -> None:
    assert len(_ranker_pids()) == 2
    codes: Counter = Counter()
    stop = threading.Event()

    def loop(w: int) -> None:
        with SearchClient(f"localhost:{app['port']}", application=APP, timeout=30) as c:
            n = 0
            while not stop.is_set():
                try:
                    c.search(f"boots {w} {n}", k=5)
                    codes["OK"] += 1
                except SearchError as e:
                    codes[e.code] += 1
                n += 1

    workers = [threading.Thread(target=loop, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(3)
        before = codes["OK"]
        os.kill(_ranker_pids()[0], signal.SIGKILL)
        time.sleep(8)
        assert codes["OK"] > before  # still answering after the kill
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # never INTERNAL/UNKNOWN
    assert codes["UNAVAILABLE"] == 0, codes  # two replicas + retries: nothing reached the caller


def test_a_saturated_graph_sheds_at_once_with_a_retry_hint(app) -> None:
    """An app whose admission lets one request in at a time (and a 10 ms wait target): a burst of 16
    concurrent searches gets RESOURCE_EXHAUSTED at once for the ones that would queue, with a
    retry-after-ms hint, the rest answered; the sheds are in the ingress's log with their code."""
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve
    from shoprank.serve_app import server

    from tests.serving_helpers import TEST_REPLICA_CPUS

    name = "saturated"
    server.deploy({"index_dir": str(app["index"]), "encoder": "tiny", **TEST_REPLICA_CPUS,
                   "serving": {"admission_min_in_flight": 1, "admission_target_wait_s": 0.01,
                               "request_timeout_s": 60}}, name=name)  # fmt: skip
    channel = grpc.insecure_channel(f"localhost:{app['port']}")
    call = channel.unary_unary("/shoprank.v1.SearchService/Search")

    def one(i: int) -> tuple[str, dict]:
        try:
            call(pb2.SearchRequest(query=f"boots {i}", k=5).SerializeToString(),
                 metadata=[("application", name)], timeout=60)  # fmt: skip
            return "OK", {}
        except grpc.RpcError as e:
            return e.code().name, dict(e.trailing_metadata() or ())

    try:
        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(one, range(16)))
    finally:
        channel.close()
        serve.delete(name)
    codes = Counter(code for code, _ in results)
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert codes["OK"] >= 1 and codes["RESOURCE_EXHAUSTED"] >= 1, codes
    assert all(int(md["retry-after-ms"]) > 0 for code, md in results if code == "RESOURCE_EXHAUSTED")
