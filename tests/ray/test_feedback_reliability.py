"""Reliability of the event path with real processes: a real ``shoprank serve``, a real store server.

- ``kill -9`` the serve process (its whole process group: the CLI, its Ray, Serve's proxy and
  replicas) while ``Feedback`` batches are being acknowledged; the local store it started
  (detached, its own session) lives on. After ``shoprank serve`` is started again on the same
  ``--store-dir`` (it finds the running store), every acknowledged event is counted, every batch
  whole, and resending every batch (their event ids) counts nothing twice.
- The store killed under a concurrency-8 ``Search`` loop: no call fails, every call answered while it
  is down says ``degraded`` with no signals, and once it is back every call is blended again (no
  restart). The non-load version is ``test_feedback_e2e.py``; this reuses its app fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
import redis
from shoprank.net import free_port
from shoprank.serving.client import SearchClient
from shoprank.serving.protos import pb2
from shoprank.store.server import running_store, stop_local_store

from tests.ray.test_feedback_e2e import feedback, served  # noqa: F401 - served: the module's app fixture
from tests.serving_helpers import index_with_model, small_catalogue, text_of

BATCH = 20
REPO = Path(__file__).resolve().parents[2]


# -- kill -9 the serve process --------------------------------------------------------------------
def start_serve(index: Path, store_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """``shoprank serve`` as a user starts it, in its own process group (so kill -9 reaches all of it),
    with its own local Ray and the local store of ``store_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SHOPRANK_STORE_URL")}
    env.update(HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled", RAY_raylet_start_wait_time_s="240")
    cmd = [sys.executable, "-m", "shoprank", "serve", "--encoder", "tiny", "--index", str(index), "--port", str(port),
           "--store-dir", str(store_dir), "--num-cpus", "2"]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_serving(proc: subprocess.Popen, port: int, log: Path, timeout_s: float = 150.0) -> SearchClient:
    client = SearchClient(f"localhost:{port}", timeout=10)
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"shoprank serve exited with {proc.returncode}: {log.read_text()[-2000:]}"
        try:
            client.search("boots", k=1)
            return client
        except Exception as err:  # noqa: BLE001 - not up yet (no proxy, or no app yet)
            if time.monotonic() > deadline:
                raise AssertionError(f"not serving in {timeout_s}s: {log.read_text()[-2000:]}") from err
            time.sleep(0.5)


def serve_on_a_free_port(
    index: Path, store_dir: Path, log: Path, tries: int = 3
) -> tuple[subprocess.Popen, SearchClient]:
    """``start_serve`` + ``wait_serving`` on a free port; again on another port when the one picked was taken
    before Serve bound it (a free port is only free until someone binds it: the new Ray's own processes
    pick ports while Serve starts)."""
    for attempt in range(tries):
        port, start = free_port(), log.stat().st_size if log.exists() else 0
        proc = start_serve(index, store_dir, port, log)
        try:
            return proc, wait_serving(proc, port, log)
        except AssertionError:
            if proc.poll() is None:
                kill_9(proc)
            raced = b"Failed to bind to address" in log.read_bytes()[start:]
            if not raced or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def kill_9(proc: subprocess.Popen) -> None:
    """SIGKILL the serve process's group (the CLI and everything it started that did not leave it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def click_batch(cat, b: int) -> list[pb2.FeedbackEvent]:
    return [pb2.FeedbackEvent(query=text_of(cat, (b * BATCH + n) % 50), item_id=cat["item_id"][n], type=pb2.CLICK,
                              user_id=f"user-{n % 3}", event_id=f"kill-{b}-{n}") for n in range(BATCH)]  # fmt: skip


def clicks_counted(url: str) -> tuple[int, int]:
    """(stats events, the sum of every query's plain click counts) in the store."""
    c = redis.Redis.from_url(url, decode_responses=True)
    try:
        total = sum(int(v) for key in c.scan_iter("sr:c:all:q:*", count=1000) for v in c.hvals(key))
        return int(c.hget("sr:stats", "events") or 0), total
    finally:
        c.close()


def test_kill_9_serve_after_acknowledged_feedback_loses_and_doubles_nothing(tmp_path) -> None:
    from shoprank.model.checkpoint import load_model

    cat = small_catalogue()
    index = index_with_model(load_model(None, encoder="tiny")[0], cat, tmp_path / "index", "pretrained-tiny")
    store_dir, log = tmp_path / "store", tmp_path / "serve.log"
    proc = restarted = None
    try:
        proc, client = serve_on_a_free_port(index, store_dir, log)
        acked: list[int] = []
        attempted = [0]
        stop = threading.Event()

        def send() -> None:
            for b in range(10_000):
                attempted[0] = b + 1
                try:
                    resp = client.stub.Feedback(pb2.FeedbackRequest(events=click_batch(cat, b)),
                                                metadata=client.metadata, timeout=10)  # fmt: skip
                except grpc.RpcError:
                    return  # the server is gone: this batch was not acknowledged
                assert (resp.accepted, resp.duplicates) == (BATCH, 0)
                acked.append(b)
                if stop.is_set():
                    return

        t = threading.Thread(target=send)
        t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 10 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_9(proc)  # while batches are still being sent
        stop.set()
        t.join(30)
        client.close()
        assert len(acked) >= 10 and acked == list(range(len(acked)))
        store = running_store(store_dir)
        assert store is not None, "the local store outlives the serve process that started it"
        restarted, client = serve_on_a_free_port(index, store_dir, log)
        assert running_store(store_dir).url == store.url  # the restarted serve found the same store
        events, clicks = clicks_counted(store.url)
        assert events == clicks and events % BATCH == 0  # every batch whole
        assert len(acked) * BATCH <= events <= attempted[0] * BATCH  # every acknowledged one, at most the one in flight
        for b in range(attempted[0]):  # the caller resends what it sent: nothing counts twice
            resp = feedback(client, click_batch(cat, b))
            assert resp.accepted + resp.duplicates == BATCH
            if b in acked:
                assert resp.duplicates == BATCH
        assert clicks_counted(store.url) == (attempted[0] * BATCH, attempted[0] * BATCH)
        client.close()
    finally:
        for p in (proc, restarted):
            if p is not None and p.poll() is None:
                kill_9(p)
        stop_local_store(store_dir)


# -- the store killed under load ------------------------------------------------------------------
class Call(NamedTuple):
    start: float
    end: float
    degraded: bool
    signals: tuple[str, ...]
    items: int
    error: str | None


def test_store_killed_under_search_load_degrades_then_blends_again(served) -> None:  # noqa: F811
    c, store, cat = served["client"], served["store"], served["cat"]
    q, item = text_of(cat, 21), cat["item_id"][22]
    click = pb2.FeedbackEvent(query=q, item_id=item, type=pb2.CLICK, user_id="shopper-8", event_id="load-1")
    feedback(c, [click])
    queries = [q] + [text_of(cat, i) for i in range(40)]
    calls: list[Call] = []
    stop = threading.Event()

    def loop(worker: int) -> None:
        i = worker
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = c.search(queries[i % len(queries)], k=5, user_id="shopper-8")
                calls.append(Call(t0, time.monotonic(), r.degraded, tuple(r.signals), len(r.items), None))
            except Exception as e:  # noqa: BLE001 - a failed call is what this test counts
                calls.append(Call(t0, time.monotonic(), True, (), 0, repr(e)))
            i += 8

    def wait_for(n: int, after: float, timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(x.start > after for x in calls) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    workers = [threading.Thread(target=loop, args=(w,)) for w in range(8)]
    for w in workers:
        w.start()
    try:
        wait_for(16, 0.0)
        killed = time.monotonic()
        store.kill()
        wait_for(24, killed)
        restarting = time.monotonic()
    finally:
        store.start()  # same dir and port; its append-only file still holds the click
    back = time.monotonic()
    wait_for(24, back)
    stop.set()
    for w in workers:
        w.join(60)
    assert [x.error for x in calls if x.error] == [], "a Search call failed"
    assert all(x.items == 5 for x in calls)
    up = [x for x in calls if x.end < killed]
    down = [x for x in calls if killed < x.start and x.end < restarting]
    after = [x for x in calls if x.start > back]
    assert len(up) >= 8 and not any(x.degraded for x in up) and all(x.signals for x in up)
    assert len(down) >= 16 and all(x.degraded and x.signals == () for x in down)
    assert len(after) >= 16 and not any(x.degraded for x in after), "blended again once the store is back"
    assert all("popularity" in x.signals for x in after)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
