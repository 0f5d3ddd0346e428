"""Hostile requests over a real gRPC socket: every one gets its documented status code and a short
message, the proxy's memory stays bounded, and refused requests are logged (hashed user).

One tiny app with a token for the module. Raw channels send bytes the generated client never would.
Issue 21's cases: values echoed into messages (100k characters in every string field), size limits
(over the limit, over twice the limit, a gzip bomb), bytes that do not parse, and the request log.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import grpc
import psutil
import pytest
from shoprank.request_limits import max_request_bytes
from shoprank.serving.protos import pb2

from tests.serving_helpers import deploy_tiny, indexed_catalogue

TOKEN = "hostile-token"
APP = "hostile"
AUTH = [("authorization", f"Bearer {TOKEN}"), ("application", APP)]
BIG = 100_000  # characters in a hostile string value
MAX_MESSAGE = 1000  # the ingress's cap on a status message


@pytest.fixture(scope="module")
def app(ray_local, tmp_path_factory):
    from ray import serve

    tmp = tmp_path_factory.mktemp("hostile")
    cat, _ = indexed_catalogue(tmp)
    port = deploy_tiny(tmp / "index", APP, token=TOKEN, store_url=None, serving={"request_timeout_s": 120})
    channel = grpc.insecure_channel(f"localhost:{port}", options=[("grpc.max_send_message_length", -1)])
    yield {"port": port, "cat": cat, "channel": channel}
    channel.close()
    serve.delete(APP)


def raw_call(app, method: str, body: bytes, metadata=AUTH, **kw) -> grpc.RpcError | bytes:
    """Send ``body`` as is to SearchService/``method``; the RpcError, or the response bytes."""
    call = app["channel"].unary_unary(f"/shoprank.v1.SearchService/{method}")  # bytes in, bytes out
    try:
        return call(body, metadata=metadata, timeout=60, **kw)
    except grpc.RpcError as e:
        return e


def expect(result, code: grpc.StatusCode, needle: str = "") -> str:
    assert isinstance(result, grpc.RpcError), f"expected {code.name}, got a response"
    details = result.details() or ""
    assert result.code() == code, (result.code(), details[:300])
    assert needle in details, (needle, details[:300])
    assert len(details) <= MAX_MESSAGE
    return details


def _search(**kw) -> pb2.SearchRequest:
    return pb2.SearchRequest(**{"query": "boots", "k": 5, **kw})


LONG = "x" * BIG
HOSTILE_SEARCH = {
    "query": _search(query=LONG),
    "user_id": _search(user_id=LONG),
    "filters.category": _search(filters=pb2.Filters(category=LONG)),
    "filters.by_name key": _search(filters=pb2.Filters(by_name={LONG: "1"})),
    "filters.by_name price value": _search(filters=pb2.Filters(by_name={"price_min": LONG})),
    "filters.by_name in_stock value": _search(filters=pb2.Filters(by_name={"in_stock": LONG})),
    "blend_weights key": _search(blend_weights={LONG: 1.0}),
    "context.locale": _search(context=pb2.Context(locale=LONG)),
    "context.campaign": _search(context=pb2.Context(campaign=LONG)),
}


@pytest.mark.parametrize("field", list(HOSTILE_SEARCH))
def test_long_values_in_search_are_refused_with_a_short_message(app, field: str) -> None:
    details = expect(
        raw_call(app, "Search", HOSTILE_SEARCH[field].SerializeToString()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert LONG[:200] not in details  # quoted as a prefix, never whole


def test_long_values_in_rank_and_feedback(app) -> None:
    ids = app["cat"]["item_id"].to_list()
    for req in (pb2.RankRequest(query="boots", item_ids=[ids[0], LONG]), pb2.RankRequest(query=LONG, item_ids=ids[:2])):
        details = expect(raw_call(app, "Rank", req.SerializeToString()), grpc.StatusCode.INVALID_ARGUMENT)
        assert LONG[:200] not in details
    for field in ("query", "item_id", "user_id", "request_id", "event_id"):
        event = {"type": pb2.CLICK, "query": "boots", "item_id": ids[0], field: LONG}
        body = pb2.FeedbackRequest(events=[pb2.FeedbackEvent(**event)]).SerializeToString()
        # validated before the store is asked for (this app has none): INVALID_ARGUMENT naming the field
        details = expect(raw_call(app, "Feedback", body), grpc.StatusCode.INVALID_ARGUMENT, f"events[0].{field}")
        assert LONG[:200] not in details


def test_over_the_size_limit_is_invalid_argument_naming_the_limit(app) -> None:
    limit = max_request_bytes()
    body = _search(query="y" * int(limit * 1.5)).SerializeToString()
    expect(raw_call(app, "Search", body), grpc.StatusCode.INVALID_ARGUMENT, f"over the {limit}-byte request limit")
    feedback = pb2.FeedbackRequest(
        events=[pb2.FeedbackEvent(query="q" * int(limit * 1.5), item_id="i", type=pb2.CLICK)]
    )
    expect(raw_call(app, "Feedback", feedback.SerializeToString()), grpc.StatusCode.INVALID_ARGUMENT, "request limit")


def test_over_twice_the_limit_is_refused_by_grpc_before_it_is_read(app) -> None:
    limit = max_request_bytes()
    body = _search(query="z" * (3 * limit)).SerializeToString()
    expect(raw_call(app, "Search", body), grpc.StatusCode.RESOURCE_EXHAUSTED, f"vs. {2 * limit}")


def _proxy_rss() -> int:
    from shoprank.serve_app.processes import proxy_pids

    (pid,) = proxy_pids()
    return psutil.Process(pid).memory_info().rss


def test_gzip_bomb_is_refused_without_inflating_it(app) -> None:
    """~200 KiB on the wire that inflates to 200 MiB: refused, the proxy's memory within 100 MB of idle."""
    body = _search(query="a" * (200 << 20)).SerializeToString()
    assert len(gzip.compress(body)) < 1 << 20  # what crosses the wire is small
    idle = _proxy_rss()
    expect(raw_call(app, "Search", body, compression=grpc.Compression.Gzip), grpc.StatusCode.RESOURCE_EXHAUSTED)
    peak_after = _proxy_rss()
    assert peak_after - idle < 100 << 20, (idle >> 20, peak_after >> 20)
    assert raw_call(app, "Search", _search().SerializeToString(), compression=grpc.Compression.Gzip)  # still serving


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("Search", b"\xff\xfe\xfd garbage"),
        ("Search", _search(query="boots and more").SerializeToString()[:-3]),  # truncated
        ("Search", b"\x0a\x04\xff\xfe\xc3\x28"),  # field 1 (query), invalid UTF-8
        ("Rank", b"\x12\x03\xc3\x28\xff"),  # item_ids with invalid UTF-8
        ("Feedback", b"\x0a\x05\x0a\x03\xff\xfe\xfd"),  # an event whose request_id is invalid UTF-8
    ],
)
def test_bytes_that_do_not_parse_are_invalid_argument(app, method: str, body: bytes) -> None:
    kind = {"Search": "SearchRequest", "Rank": "RankRequest", "Feedback": "FeedbackRequest"}[method]
    expect(raw_call(app, method, body), grpc.StatusCode.INVALID_ARGUMENT, f"could not parse {kind}")


def test_routing_and_auth_mistakes_get_their_codes(app) -> None:
    ok = _search().SerializeToString()
    expect(raw_call(app, "Search", ok, metadata=[("application", APP)]), grpc.StatusCode.UNAUTHENTICATED, "missing")
    bad_token = [("authorization", "Bearer " + "t" * 4000), ("application", APP)]
    expect(raw_call(app, "Search", ok, metadata=bad_token), grpc.StatusCode.UNAUTHENTICATED, "invalid bearer")
    unknown = app["channel"].unary_unary("/shoprank.v1.SearchService/Nope")
    with pytest.raises(grpc.RpcError) as e:
        unknown(ok, metadata=AUTH, timeout=60)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _ingress_log() -> str:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    return "".join(p.read_text(errors="replace") for p in logs.glob(f"replica_{APP}_SearchIngress_*.log"))


def test_refused_requests_are_logged_with_code_and_hashed_user(app) -> None:
    from shoprank.hashing import hash_id

    user = "hostile-user-7@example.com"
    expect(raw_call(app, "Search", _search(k=0, user_id=user).SerializeToString()), grpc.StatusCode.INVALID_ARGUMENT)
    expect(raw_call(app, "Search", _search(user_id=user).SerializeToString(), metadata=[("application", APP)]),
           grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip
    want = [f"code=INVALID_ARGUMENT user={hash_id(user)}", f"code=UNAUTHENTICATED user={hash_id(user)}"]
    deadline = time.monotonic() + 30  # the flusher writes within a second; generous on a loaded machine
    while not all(w in _ingress_log() for w in want) and time.monotonic() < deadline:
        time.sleep(0.5)
    text = _ingress_log()
    assert all(w in text for w in want), want
    assert user not in text  # the raw id never reaches the log


def test_served_lines_reach_the_log_without_an_error_to_flush_them(app) -> None:
    """Five plain searches (nothing logged at ERROR, which is what used to flush the buffer) appear in the
    log file while the replica keeps running."""
    ids = []
    for i in range(5):
        resp = pb2.SearchResponse.FromString(raw_call(app, "Search", _search(query=f"boots {i}").SerializeToString()))
        ids.append(resp.request_id)
    deadline = time.monotonic() + 30
    while not all(f"id={r}" in _ingress_log() for r in ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(f"id={r}" in _ingress_log() for r in ids)


def test_health_check_with_bytes_that_do_not_parse(app) -> None:
    check = app["channel"].unary_unary("/grpc.health.v1.Health/Check")
    with pytest.raises(grpc.RpcError) as e:
        check(b"\x0a\x03\xff\xfe\xfd", metadata=AUTH, timeout=60)  # service name: invalid UTF-8
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not parse HealthCheckRequest" in e.value.details()
