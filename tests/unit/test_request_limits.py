"""The request-size limit (one setting -> the proxy's and the internal channels' gRPC options), the
proxy-side lenient deserializer, and how error messages quote request values."""

from __future__ import annotations

import pytest
from shoprank.request_limits import DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_ENV, max_request_bytes, serve_limit_env
from shoprank.serving.config import ServingConfig
from shoprank.serving.protos import UnreadableRequest, lenient, pb2
from shoprank.serving.validation import InvalidRequest, shown, validate_rank, validate_search


def test_one_setting_sizes_every_channel(monkeypatch) -> None:
    monkeypatch.delenv(MAX_REQUEST_BYTES_ENV, raising=False)
    assert max_request_bytes() == DEFAULT_MAX_REQUEST_BYTES
    env = serve_limit_env(8 << 20)
    assert env["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] == str(16 << 20)  # gRPC's own cap: twice the limit
    assert int(env["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"]) >= 4 * (8 << 20)  # inside: never smaller
    assert int(serve_limit_env(4096)["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"]) == 4 << 20  # gRPC's default floor
    monkeypatch.setenv(MAX_REQUEST_BYTES_ENV, "65536")
    assert max_request_bytes() == 65536 and serve_limit_env()[MAX_REQUEST_BYTES_ENV] == "65536"
    for bad in ("lots", "12", str(1 << 40)):
        monkeypatch.setenv(MAX_REQUEST_BYTES_ENV, bad)
        with pytest.raises(ValueError, match=MAX_REQUEST_BYTES_ENV):
            max_request_bytes()


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\xfd", pb2.SearchRequest(query="boots and more").SerializeToString()[:-3], b"\x0a\x02\xc3\x28"],
)
def test_undecodable_bytes_become_an_unreadable_request(raw: bytes) -> None:
    got = lenient(pb2.SearchRequest)(raw)
    assert isinstance(got, UnreadableRequest) and got.size == len(raw)
    assert got.reason.startswith(f"could not parse SearchRequest ({len(raw)} bytes)")


def test_oversized_bytes_are_not_parsed(monkeypatch) -> None:
    monkeypatch.setenv(MAX_REQUEST_BYTES_ENV, "2048")
    got = lenient(pb2.SearchRequest)(pb2.SearchRequest(query="q" * 3000).SerializeToString())
    assert isinstance(got, UnreadableRequest) and "over the 2048-byte request limit" in got.reason
    ok = lenient(pb2.SearchRequest)(pb2.SearchRequest(query="boots", k=3).SerializeToString())
    assert isinstance(ok, pb2.SearchRequest) and ok.query == "boots" and ok.k == 3


def test_shown_quotes_a_prefix_and_the_length() -> None:
    assert shown("red") == "'red'"
    long = "z" * 100_000
    assert shown(long) == f"{'z' * 40!r}... (100000 characters)"


@pytest.mark.parametrize(
    "req",
    [
        pb2.SearchRequest(query="boots", k=5, filters=pb2.Filters(by_name={"x" * 100_000: "1"})),
        pb2.SearchRequest(query="boots", k=5, filters=pb2.Filters(by_name={"price_max": "9" * 100_000 + "x"})),
        pb2.SearchRequest(query="boots", k=5, blend_weights={"w" * 100_000: 1.0}),
        pb2.SearchRequest(query="boots", k=5, user_id="u" * 100_000),
        pb2.RankRequest(query="boots", item_ids=["a", "i" * 100_000]),
    ],
)
def test_validation_messages_stay_short(req) -> None:
    check = validate_rank if isinstance(req, pb2.RankRequest) else validate_search
    with pytest.raises(InvalidRequest) as e:
        check(req, ServingConfig())
    assert len(str(e.value)) < 300, str(e.value)[:300]
