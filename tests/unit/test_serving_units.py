"""Serving without Ray: generated protos, validation messages, blend, auth/TLS, client filters."""

from __future__ import annotations

import math

import grpc
import pytest
from shoprank.serving import protos
from shoprank.serving.auth import add_tls_port, check_token, self_signed_cert
from shoprank.serving.blend import blend, top_k
from shoprank.serving.client import SearchClient, build_filters
from shoprank.serving.config import ServingConfig
from shoprank.serving.validation import InvalidRequest, validate_rank, validate_search

pb2 = protos.pb2
CFG = ServingConfig(max_k=50, max_query_chars=40)


def test_generated_code_is_in_the_package() -> None:
    assert pb2.SearchRequest.__module__ == "shoprank.v1.search_pb2"  # pickles by reference
    assert protos.SERVICE_NAME == "shoprank.v1.SearchService"


def _search(**kw) -> pb2.SearchRequest:
    kw.setdefault("query", "winter boots")
    kw.setdefault("k", 10)
    return pb2.SearchRequest(**kw)


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"query": "   "}, "query: must not be empty"),
        ({"query": "x" * 41}, "maximum is 40"),
        ({"k": 0}, "k: must be 1..50"),
        ({"k": 51}, "k: must be 1..50"),
        ({"filters": pb2.Filters(by_name={"colour": "red"})}, "unknown filter field 'colour'"),
        ({"filters": pb2.Filters(by_name={"price_min": "cheap"})}, "expected a number"),
        ({"filters": pb2.Filters(by_name={"in_stock": "maybe"})}, "expected true or false"),
        ({"filters": pb2.Filters(price_min=50, price_max=10)}, "greater than price_max"),
        ({"filters": pb2.Filters(price_min=-1)}, ">= 0"),
        ({"blend_weights": {"ctr": 1.0}}, "unknown task 'ctr'"),
        ({"blend_weights": {"click": -0.5}}, "must be >= 0"),
        ({"blend_weights": {"click": 11.0}}, "above the maximum 10"),
        ({"blend_weights": {"click": math.nan}}, "must be finite"),
        ({"blend_weights": {"click": 0.0}}, "at least one weight"),
        ({"context": pb2.Context(month=13)}, "context.month"),
    ],
)
def test_search_validation_messages(request_kwargs, message) -> None:
    with pytest.raises(InvalidRequest, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate_search(_search(**request_kwargs), CFG)


def test_wrong_wire_type_and_unknown_fields_are_rejected() -> None:
    good = _search().SerializeToString()
    # field 4 (k, an int32) sent length-delimited, as a client with a mismatched proto would
    bad = pb2.SearchRequest.FromString(good + bytes([0x22, 0x01, 0x41]))
    with pytest.raises(InvalidRequest, match="#4"):
        validate_search(bad, CFG)
    unknown = pb2.SearchRequest.FromString(good + bytes([0xF8, 0x07, 0x01]))  # field 127, varint
    with pytest.raises(InvalidRequest, match="#127"):
        validate_search(unknown, CFG)


def test_valid_search_and_rank() -> None:
    q = validate_search(
        _search(user_id="alice", context=pb2.Context(month=12), filters=pb2.Filters(by_name={"in_stock": "yes"})),
        CFG,
    )
    assert q.k == 10 and q.month == 12 and q.filters.in_stock is True
    assert q.user_hash and "alice" not in q.user_hash and len(q.user_hash) == 16
    assert q.weights == CFG.blend_weights
    r = validate_rank(pb2.RankRequest(query="boots", item_ids=["a", "b"]), CFG)
    assert r.item_ids == ["a", "b"] and r.k == 2
    with pytest.raises(InvalidRequest, match="duplicates"):
        validate_rank(pb2.RankRequest(query="boots", item_ids=["a", "a"]), CFG)
    with pytest.raises(InvalidRequest, match="at least one candidate"):
        validate_rank(pb2.RankRequest(query="boots"), CFG)


def test_blend_and_top_k() -> None:
    import numpy as np

    s = {"relevance": np.array([0.1, 0.9, 0.5]), "click": np.array([1.0, 0.0, 0.5])}
    final = blend(s, {"relevance": 1.0, "click": 0.5})
    assert np.allclose(final, [0.6, 0.9, 0.75])
    assert list(top_k(final, 2)) == [1, 2]


def test_token_check() -> None:
    assert check_token(None, []) is None
    assert "missing" in check_token("t0k", [("application", "x")])
    assert check_token("t0k", [("authorization", "Bearer nope")]) == "invalid bearer token"
    assert check_token("t0k", [("authorization", "Bearer t0k")]) is None


def test_client_filters_typed_or_by_name() -> None:
    f = build_filters({"category": "Home", "price_max": 20, "in_stock": True, "colour": "red", "price_min": "x"})
    assert f.category == "Home" and f.price_max == 20 and f.in_stock is True
    assert dict(f.by_name) == {"colour": "red", "price_min": "x"}  # the server rejects these


def test_tls_port_hook_serves_tls(tmp_path, monkeypatch) -> None:
    """The grpc_servicer_functions hook adds a TLS port to a grpc server (as it does to Serve's proxy)."""
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2_grpc
    from shoprank.net import free_port

    cert, key = self_signed_cert(str(tmp_path))
    port = free_port()
    monkeypatch.setenv("SHOPRANK_TLS_CERT", cert)
    monkeypatch.setenv("SHOPRANK_TLS_KEY", key)
    monkeypatch.setenv("SHOPRANK_TLS_PORT", str(port))
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    add_tls_port(None, server)
    server.start()
    try:
        with SearchClient(f"localhost:{port}", ca_file=cert, server_name="localhost") as c:
            assert c.health(timeout=5) == "SERVING"
        with SearchClient(f"localhost:{port}") as plain:  # plaintext against the TLS port fails
            with pytest.raises(Exception, match="UNAVAILABLE"):
                plain.health(timeout=2)
    finally:
        server.stop(0)


def test_serve_config_yaml_is_valid() -> None:
    """deployments/serve_config.yaml parses with Serve's own schema and the app's argument model."""
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema
    from shoprank.serve_app.app import GRPC_SERVICER_FUNCTIONS, AppArgs
    from shoprank.serving.config import ServingConfig

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "deployments" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw) if hasattr(ServeDeploySchema, "model_validate") else None
    schema = schema or ServeDeploySchema.parse_obj(raw)
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    (app,) = schema.applications
    assert app.import_path == "shoprank.serve_app:build_app"
    args = AppArgs.model_validate(app.args)
    ServingConfig.model_validate(args.serving)
    names = {d.name for d in app.deployments}
    assert names == {"SearchIngress", "QueryIntent", "CandidateRetriever", "MultiTaskRanker"}
    for d in app.deployments:
        # resources come from the app's args: ray_actor_options here would replace the app's whole
        assert d.autoscaling_config and "ray_actor_options" not in d.model_dump(exclude_unset=True)
    for name in ("ingress", "intent", "retriever", "ranker"):
        assert 0 < getattr(args, f"{name}_num_cpus") < 1
    assert args.ranker_num_gpus is None and args.intent_num_gpus is None  # auto: a GPU when the cluster has one


def test_coalescer_batches_what_waits_for_a_slot() -> None:
    """Calls that arrive while every slot is busy go out together; errors reach each caller."""
    import asyncio

    from shoprank.serve_app.common import Coalescer

    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0.05)
        if -1 in items:
            raise ValueError("bad item")
        return [2 * i for i in items]

    async def main() -> tuple[list[int], list]:
        co = Coalescer(double, max_batch=4, slots=1)
        got = await asyncio.gather(*(co(i) for i in range(7)))
        return got, await asyncio.gather(co(5), co(-1), co(7), return_exceptions=True)

    got, mixed = asyncio.run(main())
    assert got == [2 * i for i in range(7)]  # each call gets its own result
    # the first call finds the slot free; the six behind it wait and leave in batches of <= 4
    assert seen[:3] == [[0], [1, 2, 3, 4], [5, 6]]
    assert seen[3:] == [[5], [-1, 7]] and mixed[0] == 10
    assert all(isinstance(e, ValueError) for e in mixed[1:])  # the failed batch's error reaches both calls
