"""Acknowledged means stored: kill -9 the store server right after (or while) writing, restart it on
the same data dir, and every acknowledged event is counted, every batch whole. Real servers, own dirs."""

from __future__ import annotations

import threading

import redis
from shoprank.store.errors import StoreUnavailable
from shoprank.store.events import Event
from shoprank.store.server import LocalStore, ensure_local_store, running_store, server_args, stop_local_store
from shoprank.store.writer import StoreWriter

BATCH = 10


def batch(b: int) -> list[Event]:
    return [Event(query=f"q{b % 7}", item_id=f"sku{n}", type="click", time_us=1_315_000_000_000_000 + b * 1000 + n,
                  user_hash="h1", event_id=f"b{b}-{n}") for n in range(BATCH)]  # fmt: skip


def counted(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.hget("sr:stats", "events") or 0)
    finally:
        client.close()


def test_the_server_runs_with_an_fsynced_append_only_file(tmp_path) -> None:
    args = server_args(tmp_path, 1)
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always"
    server = LocalStore(tmp_path).start()
    try:
        conf = redis.Redis.from_url(server.url, decode_responses=True).config_get("append*")
        assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"
    finally:
        server.stop()


def test_kill_9_after_acknowledged_writes_loses_nothing(tmp_path) -> None:
    server = LocalStore(tmp_path).start()
    w = StoreWriter(server.url)
    for b in range(30):
        assert w.write(batch(b)).accepted == BATCH  # acknowledged
    server.kill()  # no chance to flush anything
    restarted = LocalStore(tmp_path).start()
    try:
        assert counted(restarted.url) == 30 * BATCH
        client = redis.Redis.from_url(restarted.url, decode_responses=True)
        assert sum(int(client.hget(f"sr:c:all:q:q{k}", "sku0") or 0) for k in range(7)) == 30
        # the ids came back too: resending an acknowledged batch counts nothing twice
        assert StoreWriter(restarted.url).write(batch(3)).duplicates == BATCH
    finally:
        restarted.stop()


def test_kill_9_under_load_keeps_every_acknowledged_batch_whole(tmp_path) -> None:
    server = LocalStore(tmp_path).start()
    acked: list[int] = []
    failed = threading.Event()
    started = threading.Event()

    def write() -> None:
        w = StoreWriter(server.url)
        for b in range(100_000):
            try:
                w.write(batch(b), log=False)
            except StoreUnavailable:
                failed.set()
                return
            acked.append(b)
            started.set()

    t = threading.Thread(target=write)
    t.start()
    started.wait(30)
    while len(acked) < 50 and t.is_alive():
        t.join(0.01)
    server.kill()
    t.join(30)
    assert failed.is_set()  # the writer was told: nothing after the kill was acknowledged
    restarted = LocalStore(tmp_path).start()
    try:
        n = counted(restarted.url)
        assert n % BATCH == 0  # no batch half-applied
        assert len(acked) * BATCH <= n <= (len(acked) + 1) * BATCH  # every acknowledged one, at most the one in flight
    finally:
        restarted.stop()


def test_ensure_local_store_reuses_the_running_server(tmp_path) -> None:
    url = ensure_local_store(tmp_path)
    try:
        assert ensure_local_store(tmp_path) == url and running_store(tmp_path) is not None
        StoreWriter(url).write(batch(0))
    finally:
        assert stop_local_store(tmp_path)
    assert running_store(tmp_path) is None and not stop_local_store(tmp_path)
    url2 = ensure_local_store(tmp_path)  # a new process on the same files
    try:
        assert counted(url2) == BATCH
    finally:
        stop_local_store(tmp_path)
