"""The Serve app's custom Prometheus metrics (``ray.serve.metrics``), and one call per event to record them.

Ray exports them from every replica through its metrics agent (the node's ``metrics_export_port``),
under the names in :data:`SERIES` (``ray_`` + the metric name, ``_total`` after a counter's; a
histogram as ``_bucket``/``_sum``/``_count``). Serve adds the ``application``, ``deployment`` and
``replica`` tags itself; the tags below add the RPC ``method``, the ``stage``, the status ``code``
and, where the response names them, ``model_version`` and ``index_version``.
deployments/grafana/dashboard.json charts every one of them (tests/unit/test_grafana.py keeps the
two in step); docs/observability.md says what each means.

The metric objects are made on first use, in the replica (Serve's tags are read when a metric is
made, so never at import: the driver imports this module too). Recording never raises: a metric
that fails is logged once and the request goes on.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ray.serve")

LATENCY_MS = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
CANDIDATES = [1, 10, 25, 50, 100, 200, 400, 800, 1600]

# name -> (kind, description, tag keys, histogram boundaries)
DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "shoprank_stage_latency_ms": (
        "histogram", "Per-stage latency of answered Search/Rank requests (ms; stage total = the whole request).",
        ("method", "stage", "model_version", "index_version"), LATENCY_MS),
    "shoprank_batch_size": (
        "histogram", "Items per batch: the ingress's coalesced batches (stage=ingress) and each model stage's.",
        ("stage",), BATCH_SIZES),
    "shoprank_candidates": (
        "histogram", "Candidates ranked per answered request.", ("method", "index_version"), CANDIDATES),
    "shoprank_responses": (
        "counter", "Answered Search/Rank requests; zero_shot=true when a task was scored zero-shot.",
        ("method", "zero_shot", "model_version", "index_version"), None),
    "shoprank_degraded": (
        "counter", "Answered requests ranked by the model alone because the click blend's store failed.",
        ("method", "model_version", "index_version"), None),
    "shoprank_refused": (
        "counter", "Requests answered with an error status, by code (RESOURCE_EXHAUSTED: shed).",
        ("method", "code"), None),
    "shoprank_retries": (
        "counter", "Requests retried once after a downstream replica failed.", ("method",), None),
    "shoprank_triton_failovers": (
        "counter", "Ranker batches scored in process because Triton was down or slow.", ("stage",), None),
}  # fmt: skip

# Prometheus series names as Ray exports them: ``ray_`` + the name, a counter's with ``_total``, a
# histogram's as ``<series>_bucket``/``_sum``/``_count`` (Ray estimates ``_sum`` from the buckets).
SERIES: dict[str, str] = {n: f"ray_{n}_total" if d[0] == "counter" else f"ray_{n}" for n, d in DEFINITIONS.items()}

# The batched deployments' stage names, as the latency ``stage`` tag names them.
STAGE_OF = {
    "QueryIntent": "intent",
    "CandidateRetriever": "retrieve",
    "MultiTaskRanker": "rank",
    "CrossEncoderReranker": "rerank",
}


class ServeMetrics:
    """The app's metrics in this process (one per process: :data:`METRICS`)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] | None = None
        self._failed = False

    def _get(self, name: str) -> Any:
        if self._metrics is None:
            from ray.serve.metrics import Counter, Histogram

            made: dict[str, Any] = {}
            for n, (kind, desc, tags, bounds) in DEFINITIONS.items():
                if kind == "histogram":
                    made[n] = Histogram(n, description=desc, boundaries=bounds, tag_keys=tags)
                else:
                    made[n] = Counter(n, description=desc, tag_keys=tags)
            self._metrics = made
        return self._metrics[name]

    def _record(self, name: str, value: float, tags: dict[str, str]) -> None:
        try:
            m = self._get(name)
            if DEFINITIONS[name][0] == "histogram":
                m.observe(value, tags=tags)
            else:
                m.inc(value, tags=tags)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            if not self._failed:
                self._failed = True
                log.exception("recording metric %s failed (logged once)", name)

    # -- the events ---------------------------------------------------------------------------
    def response(self, method: str, res: Any) -> None:
        """An answered Search/Rank: ``res`` is its :class:`~shoprank.serving.stages.SearchResult`."""
        versions = {"model_version": res.model_version or "-", "index_version": res.index_version or "-"}
        for stage, ms in res.timings_ms.items():
            tags = {"method": method, "stage": stage, **versions}
            self._record("shoprank_stage_latency_ms", max(float(ms), 0.0), tags)
        self._record("shoprank_candidates", float(res.num_candidates),
                     {"method": method, "index_version": versions["index_version"]})  # fmt: skip
        zero_shot = "true" if res.zero_shot else "false"
        self._record("shoprank_responses", 1, {"method": method, "zero_shot": zero_shot, **versions})
        if res.degraded:
            self._record("shoprank_degraded", 1, {"method": method, **versions})

    def refused(self, method: str, code: str) -> None:
        """A request answered with status ``code`` (a ``grpc.StatusCode`` name)."""
        self._record("shoprank_refused", 1, {"method": method, "code": code})

    def retry(self, method: str) -> None:
        self._record("shoprank_retries", 1, {"method": method})

    def batch(self, stage: str, size: int) -> None:
        """A batch of ``size`` items through ``stage`` (``ingress``, or a deployment class name)."""
        self._record("shoprank_batch_size", float(size), {"stage": STAGE_OF.get(stage, stage)})

    def failovers(self, stage: str, n: int) -> None:
        if n > 0:
            self._record("shoprank_triton_failovers", float(n), {"stage": STAGE_OF.get(stage, stage)})


def triton_failovers(stage: object) -> int | None:
    """The failover count of the Triton client in a stage: the ranker's (``stage.ranker.backend.client``,
    :class:`shoprank.serving.triton_backend.TritonBackend`) or the cross-encoder's
    (``stage.reranker.client``, :class:`shoprank.serving.rerank.Reranker`); None for any other stage or backend."""
    ranker_client = getattr(getattr(getattr(stage, "ranker", None), "backend", None), "client", None)
    rerank_client = getattr(getattr(stage, "reranker", None), "client", None)
    for client in (ranker_client, rerank_client):
        n = getattr(getattr(client, "stats", None), "failovers", None)
        if isinstance(n, int):
            return n
    return None


METRICS = ServeMetrics()
