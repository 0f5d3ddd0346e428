"""A sharded index served over real gRPC: one RetrieverShard deployment per shard behind the router.

One Serve app for the module (tiny encoder, small catalogue; the index job builds the sharded
artefact with one Ray task per shard). The rollout test runs last: it swaps every shard to a new
index version under a steady request stream.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from shoprank.retrieval.artefact import load_artefact, read_index_manifest, write_artefact
from shoprank.serving.client import SearchClient
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.protos import pb2
from shoprank.serving.validation import validate_search

from tests.serving_helpers import TEST_REPLICA_CPUS, small_catalogue, text_of

APP = "sharded"
SHARDS = 3
SERVING = {"num_candidates": 40, "max_k": 40, "request_timeout_s": 120}


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    from ray import serve
    from shoprank.retrieval.build import build_index
    from shoprank.serve_app import server

    tmp = tmp_path_factory.mktemp("sharded")
    cat = small_catalogue()
    cat.write_parquet(tmp / "catalogue.parquet")
    m = build_index(tmp / "catalogue.parquet", tmp / "v1", encoder="tiny", batch_size=100, shards=SHARDS)
    assert len(m["shards"]) == SHARDS and {s["kind"] for s in m["shards"]} == {"exact"}
    sharded = load_artefact(tmp / "v1", verify=True)
    # the same rows and items, unsharded: the reference the sharded graph must match
    flat = write_artefact(tmp / "flat", sharded.items, np.asarray(sharded.embeddings), model_version=m["model_version"],
                          encoder="tiny", index_version=m["index_version"])  # fmt: skip
    port = server.start_serve(reuse_running=True)  # the session's Serve
    args = {"index_dir": str(tmp / "v1"), "encoder": "tiny", "allow_default_salt": True, "serving": SERVING,
            **TEST_REPLICA_CPUS}  # fmt: skip
    server.deploy(args, name=APP)
    client = SearchClient(f"localhost:{port}", timeout=60, application=APP)
    yield {"cat": cat, "tmp": tmp, "args": args, "client": client, "manifest": m, "flat": flat}
    client.close()
    serve.delete(APP)


def test_sharded_graph_matches_unsharded(served) -> None:
    """Over gRPC, the sharded graph returns exactly what the unsharded index returns in process."""
    from ray import serve

    cat, c = served["cat"], served["client"]
    pipe = SearchPipeline(served["flat"], encoder="tiny", config=ServingConfig.model_validate(SERVING))
    cases = [(text_of(cat, i), {}) for i in (0, 5, 150, 299)]
    cases += [("waterproof boots", {"category": "Apparel > Footwear", "in_stock": True}),
              ("frying pan", {"price_max": 80.0}), ("headphones", {})]  # fmt: skip
    for query, filters in cases:
        got = c.search(query, k=20, filters=filters or None)
        req = pb2.SearchRequest(query=query, k=20)
        for key, v in filters.items():
            setattr(req.filters, key, v)
        want = pipe.search(validate_search(req, pipe.config))
        assert [i.item_id for i in got.items] == [i["item_id"] for i in want.items], (query, filters)
        assert got.index_version == served["manifest"]["index_version"]
    # the fan-out really reaches every shard deployment
    for s in range(SHARDS):
        loaded = serve.get_deployment_handle(f"RetrieverShard{s}", app_name=APP).loaded.remote().result()
        assert loaded == [served["manifest"]["index_version"]]


def test_rollout_of_sharded_index_drops_nothing_and_never_mixes(served) -> None:
    """All shards swap to v2 together: every request answers, each from one version's items only."""
    from shoprank.serve_app import server

    cat, c, tmp = served["cat"], served["client"], served["tmp"]
    v1 = load_artefact(tmp / "v1")
    # v2: 200 of the items, in reverse order (so a position read against the other version names another item)
    order = np.arange(199, -1, -1)
    pos_of = {iid: p for p, iid in enumerate(v1.items["item_id"].to_list())}
    rows = [pos_of[cat["item_id"][int(i)]] for i in order]
    v2 = write_artefact(tmp / "v2", v1.items[rows], np.asarray(v1.embeddings)[rows],
                        model_version=v1.model_version, encoder="tiny", shards=SHARDS)  # fmt: skip
    v1_version, v2_version = v1.index_version, read_index_manifest(v2)["index_version"]
    ids = {v1_version: set(v1.items["item_id"].to_list()), v2_version: set(cat["item_id"][:200].to_list())}
    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def traffic(offset: int) -> None:
        i = offset
        while not stop.is_set():
            row = i % 200
            try:
                r = c.search(text_of(cat, row), k=5, timeout=60)
                assert r.items[0].item_id == cat["item_id"][row], (r.index_version, row)
                assert {it.item_id for it in r.items} <= ids[r.index_version]
                seen.append(r.index_version)
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                errors.append(repr(e))
            i += 7

    threads = [threading.Thread(target=traffic, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.deploy({**served["args"], "index_dir": str(v2)}, name=APP)
    deadline = time.time() + 90
    while time.time() < deadline and (not seen or seen[-1] != v2_version):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert seen[0] == v1_version and seen[-1] == v2_version and len(seen) > 10
    assert set(seen) == {v1_version, v2_version}
