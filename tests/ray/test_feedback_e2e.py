"""Feedback over a real gRPC socket: Serve's gRPC proxy -> ingress -> a real store server.

OK means stored and counted; a malformed event gets INVALID_ARGUMENT naming it and nothing is stored;
a stopped store gets UNAVAILABLE (and OK again once it is back, no restart); every Search response
carries its own request_id. One Serve app and one store server (own dir) for the module.

The app serves the learned click blend (weights in ``serving.click_blend_weights``): Search with
the store killed answers every call from the model alone, flagged ``degraded``; once the store is
back the blend and its signals are back, no restart.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis
from shoprank.clicks.features import BlendWeights
from shoprank.hashing import hash_id
from shoprank.serving.client import SearchClient
from shoprank.serving.protos import pb2
from shoprank.store.server import LocalStore

from tests.serving_helpers import deploy_tiny, indexed_catalogue, text_of

TOKEN = "test-token-24"
APP = "shoprank"


def blend_weights() -> dict[str, dict[str, float]]:
    """A hand-set click blend: the query's clicks, the user's own, then the model's rank."""
    w = BlendWeights.zeros()
    for name, v in (("share_7d", 1.0), ("user_clicked", 0.5), ("model_rank", 2.0)):
        w.weights[list(w.to_dict()).index(name)] = v
    return w.to_dict()


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feedback")
    cat, _ = indexed_catalogue(tmp)
    store = LocalStore(tmp / "store").start()
    args = {
        "token": TOKEN,
        "store_url": store.url,
        "store": {"max_batch_events": 50, "timeout_s": 2.0, "connect_timeout_s": 0.5},
        "serving": {
            "num_candidates": 100,
            "max_k": 50,
            "request_timeout_s": 120,
            "click_blend_weights": blend_weights(),
            "store_timeout_s": 1.0,
        },  # a loaded 2-core CI box
    }
    port = deploy_tiny(tmp / "index", APP, **args)
    client = SearchClient(f"localhost:{port}", token=TOKEN, timeout=60)
    yield {"client": client, "store": store, "cat": cat}
    client.close()
    from ray import serve

    serve.delete(APP)
    store.stop()


def feedback(client: SearchClient, events: list[pb2.FeedbackEvent], token: bool = True) -> pb2.FeedbackResponse:
    metadata = client.metadata if token else [m for m in client.metadata if m[0] != "authorization"]
    return client.stub.Feedback(pb2.FeedbackRequest(events=events), metadata=metadata, timeout=60)


def stats(store: LocalStore) -> dict[str, str]:
    return redis.Redis.from_url(store.url, decode_responses=True).hgetall("sr:stats")


def test_search_responses_carry_a_unique_request_id(served) -> None:
    c, cat = served["client"], served["cat"]
    ids = [c.search(text_of(cat, i), k=3).request_id for i in (1, 2, 3)]
    ids.append(c.rank(text_of(cat, 4), cat["item_id"][:5].to_list()).request_id)
    assert all(len(i) >= 16 for i in ids) and len(set(ids)) == 4


def test_feedback_ok_means_stored_and_counted(served) -> None:
    c, cat, store = served["client"], served["cat"], served["store"]
    resp = c.search(text_of(cat, 7), k=5, user_id="shopper-1")
    now_ms = int(time.time() * 1000)
    events = [
        pb2.FeedbackEvent(request_id=resp.request_id, user_id="shopper-1", query=text_of(cat, 7),
                          item_id=it.item_id, type=pb2.IMPRESSION, event_time_ms=now_ms, position=it.rank)
        for it in resp.items
    ]  # fmt: skip
    clicked = resp.items[0].item_id
    events.append(pb2.FeedbackEvent(request_id=resp.request_id, user_id="shopper-1", query=text_of(cat, 7),
                                    item_id=clicked, type=pb2.CLICK, position=1, event_id="click-1"))  # fmt: skip
    before = int(stats(store).get("events", 0))
    got = feedback(c, events)
    assert (got.accepted, got.duplicates) == (6, 0)
    client = redis.Redis.from_url(store.url, decode_responses=True)
    assert int(client.hget("sr:stats", "events")) == before + 6
    assert client.smembers(f"sr:u:{hash_id('shopper-1')}:any") == {clicked}
    assert sum(int(v) for v in client.hgetall("sr:n:impression:pop").values()) >= 5
    again = feedback(c, events[-1:])  # a resend with the same event_id is acknowledged, not counted again
    assert (again.accepted, again.duplicates) == (0, 1)
    assert int(client.hget("sr:stats", "events")) == before + 6


def test_malformed_feedback_is_rejected_whole(served) -> None:
    c, store = served["client"], served["store"]
    before = redis.Redis.from_url(store.url).dbsize()
    good = pb2.FeedbackEvent(query="boots", item_id="SKU0000001", type=pb2.CLICK)
    cases = [
        (pb2.FeedbackEvent(query="boots", item_id="", type=pb2.CLICK), "events[2].item_id"),
        (pb2.FeedbackEvent(query="", item_id="SKU0000001", type=pb2.CLICK), "events[2].query"),
        (pb2.FeedbackEvent(query="boots", item_id="SKU0000001"), "events[2].type"),
        (pb2.FeedbackEvent(query="boots", item_id="SKU0000001", type=pb2.CLICK, event_time_ms=5),
         "events[2].event_time_ms"),
    ]  # fmt: skip
    for bad, where in cases:
        with pytest.raises(grpc.RpcError) as err:
            feedback(c, [good, good, bad, good])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(where + ": "), err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        feedback(c, [good] * 51)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 50" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        feedback(c, [good], token=False)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert redis.Redis.from_url(store.url).dbsize() == before  # nothing of any of them stored


def test_store_down_is_unavailable_then_back_without_restart(served) -> None:
    c, store = served["client"], served["store"]
    event = pb2.FeedbackEvent(query="boots", item_id="SKU0000002", type=pb2.CLICK, event_id="while-down")
    store.stop()
    try:
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                feedback(c, [event])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            assert "retry" in err.value.details()
    finally:
        store.start()  # same dir and port: the caller's retry goes through
    assert feedback(c, [event]).accepted == 1
    assert c.search("boots", k=3).items  # Search never needed the store


def test_search_degrades_while_the_store_is_down_then_blends_again(served) -> None:
    c, store, cat = served["client"], served["store"], served["cat"]
    q, item = text_of(cat, 11), cat["item_id"][12]
    click = pb2.FeedbackEvent(query=q, item_id=item, type=pb2.CLICK, user_id="shopper-9", event_id="blend-1")
    assert feedback(c, [click]).accepted + feedback(c, [click]).duplicates == 2
    up = c.search(q, k=5, user_id="shopper-9")
    assert not up.degraded and up.items[0].item_id == item, "the click moved the clicked item first"
    assert {"query_clicks", "user_history", "popularity"} <= set(up.signals)
    queries = [text_of(cat, i) for i in range(24)]
    store.kill()
    try:
        with ThreadPoolExecutor(4) as pool:  # under load: every call answered, none failed
            down = list(pool.map(lambda t: c.search(t, k=5, user_id="shopper-9"), queries))
        assert len(down) == len(queries) and all(r.degraded and r.degraded_reason for r in down)
        assert all(list(r.signals) == [] and r.items for r in down)
    finally:
        store.start()  # same dir and port; its append-only file still holds the click
    back = c.search(q, k=5, user_id="shopper-9")
    assert not back.degraded and back.degraded_reason == "" and set(back.signals) == set(up.signals)
    assert [it.item_id for it in back.items] == [it.item_id for it in up.items]
