"""Metrics, logs and traces of the served app, read where an operator reads them.

One tiny app for the module with tracing on (every request sampled, spans as JSON lines in a temp
dir and exported over OTLP/gRPC to a real collector endpoint this module runs: the OTLP trace service
of ``opentelemetry-proto``, recording what it receives). Requests go over real gRPC; then the custom
series are scraped from Ray's Prometheus endpoint (the node's metrics agent, ``metrics_export_port``),
the ingress's log file is read as JSON lines, and one request's spans are put back together into a
tree. Ray pushes metrics every few seconds: every check polls with a bounded wait and asserts values, never timings.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from shoprank.serve_app.metrics import SERIES
from shoprank.serving.protos import pb2

from tests.serving_helpers import deploy_tiny, indexed_catalogue, text_of


class Collector:
    """A real OTLP/gRPC trace endpoint (``TraceService/Export``) on a free local port; keeps what it gets."""

    def __init__(self) -> None:
        from concurrent import futures

        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.spans: list[tuple[str, dict[str, str], dict[str, str]]] = []  # name, attributes, resource
        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):  # noqa: N802 - the OTLP service's method
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    self.spans.append((sp.name, {a.key: a.value.string_value for a in sp.attributes}, resource))
        return trace_service_pb2.ExportTraceServiceResponse()


APP = "metrics"
META = [("application", APP)]
N_SEARCH, N_RANK, N_BAD = 6, 3, 2


@pytest.fixture(scope="module")
def app(ray_local, tmp_path_factory):
    from ray import serve

    tmp = tmp_path_factory.mktemp("metrics")
    cat, _ = indexed_catalogue(tmp)
    spans, collector = tmp / "spans", Collector()
    tracing = {"enabled": True, "sampling_ratio": 1.0, "span_dir": str(spans),
               "otlp_endpoint": f"http://127.0.0.1:{collector.port}"}  # fmt: skip
    port = deploy_tiny(tmp / "index", APP, store_url=None, serving={"request_timeout_s": 120}, tracing=tracing)
    channel = grpc.insecure_channel(f"localhost:{port}")
    stub_search = channel.unary_unary("/shoprank.v1.SearchService/Search", pb2.SearchRequest.SerializeToString,
                                      pb2.SearchResponse.FromString)  # fmt: skip
    stub_rank = channel.unary_unary("/shoprank.v1.SearchService/Rank", pb2.RankRequest.SerializeToString,
                                    pb2.SearchResponse.FromString)  # fmt: skip
    responses = [stub_search(pb2.SearchRequest(query=text_of(cat, i), k=5), metadata=META, timeout=120)
                 for i in range(N_SEARCH)]  # fmt: skip
    ids = cat["item_id"].to_list()
    responses += [stub_rank(pb2.RankRequest(query=text_of(cat, i), item_ids=ids[i : i + 10], k=5), metadata=META,
                            timeout=120) for i in range(N_RANK)]  # fmt: skip
    for _ in range(N_BAD):
        with pytest.raises(grpc.RpcError) as e:
            stub_search(pb2.SearchRequest(query="boots", k=0), metadata=META, timeout=120)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    yield {"responses": responses, "spans": spans, "collector": collector}
    collector.server.stop(0)
    channel.close()
    serve.delete(APP)


def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 90.0) -> Any:
    """``fn()`` until ``ok`` of it holds or ``timeout_s`` passes; the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(1.0)
        value = fn()
    return value


# -- metrics ------------------------------------------------------------------------------------
def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the shoprank series on this node's metrics endpoint, by sample name, for APP."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    port = ray._private.worker._global_node.metrics_export_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:  # noqa: S310 - localhost
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("ray_shoprank_") and s.labels.get("application") == APP:
                out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))


def bucket(samples: dict, histogram: str, le: float, **labels: str) -> float:
    """A histogram's cumulative count of observations <= ``le``."""
    return sum(v for lab, v in samples.get(histogram + "_bucket", [])
               if float(lab["le"]) == le and all(lab.get(k) == w for k, w in labels.items()))  # fmt: skip


def _complete(s: dict) -> bool:
    return (total(s, SERIES["shoprank_stage_latency_ms"] + "_count", stage="total") >= N_SEARCH + N_RANK
            and total(s, SERIES["shoprank_refused"]) >= N_BAD
            and all(total(s, SERIES["shoprank_batch_size"] + "_count", stage=stage) > 0
                    for stage in ("ingress", "intent", "retrieve", "rank")))  # fmt: skip


def test_custom_series_are_scraped_from_rays_metrics_endpoint(app) -> None:
    s = poll(scrape, _complete)
    lat = SERIES["shoprank_stage_latency_ms"]
    n_ok = N_SEARCH + N_RANK
    assert total(s, lat + "_count", stage="total", method="Search") >= N_SEARCH, sorted(s)
    assert total(s, lat + "_count", stage="total", method="Rank") >= N_RANK
    for stage in ("validate", "intent", "retrieve", "rank", "total"):  # per-stage latency histograms
        assert total(s, lat + "_count", stage=stage) >= (N_SEARCH if stage == "retrieve" else n_ok), stage
        assert total(s, lat + "_sum", stage=stage) > 0, stage
    # each is tagged by Serve (application, deployment, replica) and with the versions that served it
    first = app["responses"][0]
    labels = next(lab for lab, _ in s[lat + "_count"] if lab["stage"] == "total")
    assert labels["deployment"] == "SearchIngress" and labels["replica"]
    assert {labels["model_version"], labels["index_version"]} == {first.model_version, first.index_version}
    # every answered request counted once, zero-shot or not
    responses = SERIES["shoprank_responses"]
    assert responses in s, sorted(s)  # the exact series name the dashboard charts
    assert total(s, responses) >= n_ok
    assert {lab["zero_shot"] for lab, _ in s[responses]} <= {"true", "false"}
    # candidates per request: Search found 200, Rank was given 10 (Ray's _sum is estimated from the
    # buckets, so the buckets are what is checked)
    cand = SERIES["shoprank_candidates"]
    assert bucket(s, cand, float("inf")) >= n_ok
    assert bucket(s, cand, 10.0, method="Rank") >= N_RANK
    assert bucket(s, cand, 10.0, method="Search") < bucket(s, cand, float("inf"), method="Search")
    # batch sizes: the ingress's coalesced batches and each model stage's, in their own replicas
    bs = SERIES["shoprank_batch_size"]
    assert total(s, bs + "_count", stage="ingress") >= 1
    stages = (("intent", "QueryIntent"), ("retrieve", "CandidateRetriever"), ("rank", "MultiTaskRanker"))
    for stage, deployment in stages:
        assert total(s, bs + "_count", stage=stage, deployment=deployment) >= 1, stage
    # refusals by code
    refused = SERIES["shoprank_refused"]
    assert total(s, refused, method="Search", code="INVALID_ARGUMENT") >= N_BAD, sorted(s)
    assert total(s, refused, code="OK") == 0


# -- logs ---------------------------------------------------------------------------------------
def _ingress_lines() -> list[dict]:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    out = []
    for p in logs.glob(f"replica_{APP}_SearchIngress_*.log"):
        for line in p.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def test_one_json_line_per_request_with_its_request_id(app) -> None:
    ids = [r.request_id for r in app["responses"]]

    def found(lines: list[dict]) -> dict[str, list[dict]]:
        return {i: [x for x in lines if f"id={i}" in x.get("message", "")] for i in ids}

    by_id = poll(lambda: found(_ingress_lines()), lambda f: all(f.values()), timeout_s=30)
    for request_id, lines in by_id.items():
        assert len(lines) == 1, (request_id, lines)
        line = lines[0]
        assert line["levelname"] == "INFO" and line["application"] == APP
        assert line["deployment"] == f"{APP}_SearchIngress"  # Serve's component name
        assert line["request_id"]  # Serve's own id of the call, beside ours in the message


# -- traces -------------------------------------------------------------------------------------
def _spans(directory: Path) -> list[dict]:
    return [json.loads(x) for p in directory.glob("spans-*.jsonl") for x in p.read_text().splitlines() if x]


def test_one_request_is_one_span_tree_across_the_four_deployments(app) -> None:
    request_id = app["responses"][0].request_id

    def tree() -> tuple[dict | None, list[dict]]:
        spans = _spans(app["spans"])
        root = next((s for s in spans if s["attributes"].get("shoprank_request_id") == request_id), None)
        return root, [s for s in spans if root and s["trace_id"] == root["trace_id"]]

    def under_root(root: dict | None, spans: list[dict]) -> set[str]:
        if root is None:
            return set()
        by_id = {s["span_id"]: s for s in spans}
        names = set()
        for s in spans:
            p, seen = s["parent_id"], 0
            while p is not None and p != root["span_id"] and p in by_id and seen < 20:
                p, seen = by_id[p]["parent_id"], seen + 1
            if p == root["span_id"]:
                names.add(s["name"])
        return names

    want = {f"replica_handle_request {d} __call__" for d in ("QueryIntent", "CandidateRetriever", "MultiTaskRanker")}
    root, spans = poll(tree, lambda t: want <= under_root(*t), timeout_s=30)
    assert root is not None, f"no span names request {request_id}"
    assert root["name"] == "replica_handle_request SearchIngress Search"
    names = under_root(root, spans)
    assert want <= names, names
    assert all(s["trace_id"] == root["trace_id"] for s in spans)


def test_spans_reach_an_otlp_collector(app) -> None:
    """With an OTLP endpoint configured, every deployment's spans are exported to it (batched)."""
    request_id = app["responses"][0].request_id
    stages = ("SearchIngress Search", "QueryIntent __call__", "CandidateRetriever __call__", "MultiTaskRanker __call__")
    want = {f"replica_handle_request {d}" for d in stages}
    got = poll(lambda: list(app["collector"].spans), lambda s: want <= {n for n, _, _ in s}, timeout_s=60)
    assert want <= {n for n, _, _ in got}, {n for n, _, _ in got}
    assert any(a.get("shoprank_request_id") == request_id for _, a, _ in got)
    assert all(r.get("service.name") == "shoprank" for _, _, r in got)
