"""SearchIngress: the gRPC ingress (Serve's native gRPC proxy) implementing shoprank.v1.SearchService.

Methods are looked up by RPC name: ``Search`` and ``Rank`` (shoprank.v1.SearchService) and
``Check``/``Watch`` (grpc.health.v1.Health, registered with the proxy through
``grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server``). Server reflection is Serve's
own (``gRPCOptions.enable_reflection``).

Concurrent requests are coalesced: those waiting at the same moment reach QueryIntent,
CandidateRetriever and MultiTaskRanker as one call each (``Coalescer``), so Serve's per-call cost
is paid per batch, not per request.

Status codes: INVALID_ARGUMENT (validation, with the message), UNAUTHENTICATED (bearer token),
DEADLINE_EXCEEDED (server-side budget ``request_timeout_s``), RESOURCE_EXHAUSTED (Serve's
bounded queue: ``max_ongoing_requests`` + ``max_queued_requests``), UNAVAILABLE (no replica).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle

from shoprank.serve_app.common import BatchStats, Coalescer
from shoprank.serving.auth import check_token, resolve_token
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import RankJob, SearchResult, to_response
from shoprank.serving.protos import pb2
from shoprank.serving.validation import InvalidRequest, Query, validate_rank, validate_search

log = logging.getLogger("ray.serve")


@serve.deployment(
    name="SearchIngress",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    max_queued_requests=64,
    max_surge_percent=100,  # a rollout starts the new replica before stopping the old one
)
class SearchIngress:
    def __init__(
        self,
        intent: DeploymentHandle,
        retriever: DeploymentHandle,
        ranker: DeploymentHandle,
        config: dict | None = None,
        token: str | None = None,
        token_env: str | None = "SHOPRANK_TOKEN",
    ) -> None:
        self.intent, self.retriever, self.ranker = intent, retriever, ranker
        self.cfg = ServingConfig.model_validate(config or {})
        self.token = resolve_token(token, token_env)
        self.stats = BatchStats()
        self.coalesce = Coalescer(self._run_batch, self.cfg.max_batch_size, self.cfg.ingress_batches_in_flight)

    # -- shoprank.v1.SearchService ----------------------------------------------------------
    async def Search(self, request: pb2.SearchRequest, grpc_context) -> pb2.SearchResponse:  # noqa: N802
        return await self._serve(request, grpc_context, rank=False)

    async def Rank(self, request: pb2.RankRequest, grpc_context) -> pb2.SearchResponse:  # noqa: N802
        return await self._serve(request, grpc_context, rank=True)

    # -- grpc.health.v1.Health --------------------------------------------------------------
    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context) -> health_pb2.HealthCheckResponse:  # noqa: N802
        known = ("", "shoprank.v1.SearchService")
        if request.service not in known:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request: health_pb2.HealthCheckRequest, grpc_context) -> AsyncIterator:  # noqa: N802
        yield await self.Check(request, grpc_context)

    # -- the pipeline through handles -------------------------------------------------------
    async def _serve(self, request, grpc_context, *, rank: bool) -> pb2.SearchResponse:
        t0 = time.perf_counter()
        denied = check_token(self.token, grpc_context.invocation_metadata())
        if denied:
            return self._fail(grpc_context, grpc.StatusCode.UNAUTHENTICATED, denied)
        try:
            q = validate_rank(request, self.cfg) if rank else validate_search(request, self.cfg)
        except InvalidRequest as e:
            return self._fail(grpc_context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        t_valid = time.perf_counter()
        try:
            res = await asyncio.wait_for(self._run(q), timeout=self.cfg.request_timeout_s)
        except InvalidRequest as e:
            return self._fail(grpc_context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except TimeoutError:
            return self._fail(
                grpc_context, grpc.StatusCode.DEADLINE_EXCEEDED, f"not served within {self.cfg.request_timeout_s}s"
            )
        except Exception as e:  # errors that name their status, e.g. Triton down -> UNAVAILABLE
            cause = getattr(e, "cause", None) or e  # Ray wraps errors raised in other deployments
            status = getattr(cause, "grpc_status", None)
            if status is None or not hasattr(grpc.StatusCode, status):
                raise
            return self._fail(grpc_context, getattr(grpc.StatusCode, status), str(cause))
        res.timings_ms["validate"] = (t_valid - t0) * 1e3
        res.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        log.info(
            "%s user=%s k=%d candidates=%d batch=%d index=%s %.1fms",
            "Rank" if rank else "Search", q.user_hash or "-", q.k, res.num_candidates, res.batch_size,
            res.index_version, res.timings_ms["total"],
        )  # fmt: skip
        return to_response(res, pb2)

    async def _run(self, q: Query) -> SearchResult:
        res = await self.coalesce(q)
        if isinstance(res, InvalidRequest):
            raise res
        return res

    # Concurrent requests are coalesced (``Coalescer``): one call to each deployment per batch
    # instead of one per request, so Serve's per-call cost is paid per batch. Several batches may
    # be in flight at once (``ingress_batches_in_flight``, default 2: one encoding while another ranks).
    async def _run_batch(self, qs: list[Query]) -> list[SearchResult | InvalidRequest]:
        t0 = time.perf_counter()
        self.stats.record(len(qs))
        encoded = await self.intent.remote([q.query for q in qs])
        t1 = time.perf_counter()
        search = [i for i, q in enumerate(qs) if q.item_ids is None]
        found: dict[int, tuple] = {}
        if search:
            jobs = [(encoded[i][0], None if qs[i].filters.is_empty() else qs[i].filters, self.cfg.num_candidates)
                    for i in search]  # fmt: skip
            found = dict(zip(search, await self.retriever.remote(jobs), strict=True))
        t2 = time.perf_counter()
        # per request: (positions, index_version, index_dir, search ms); Rank requests bring their ids
        retrieved = [found.get(i, (None, "", "", 0.0)) for i in range(len(qs))]
        ranked = await self.ranker.remote([
            RankJob(
                q_emb=e[0], query=q.query, k=q.k, weights=q.weights, month=q.month, index_dir=r[2],
                index_version=r[1], positions=r[0], item_ids=q.item_ids,
            )
            for q, e, r in zip(qs, encoded, retrieved, strict=True)
        ])  # fmt: skip
        t3 = time.perf_counter()
        out: list[SearchResult | InvalidRequest] = []
        for i, (q, r) in enumerate(zip(qs, ranked, strict=True)):
            if r.error:
                out.append(InvalidRequest(r.error))
                continue
            _, intent, encode_ms = encoded[i]
            out.append(SearchResult(
                items=r.items, intent=intent, model_version=r.model_version, index_version=r.index_version,
                batch_size=r.batch_size, zero_shot=r.zero_shot, weights=q.weights, num_candidates=r.num_candidates,
                timings_ms={"intent": (t1 - t0) * 1e3, "retrieve": (t2 - t1) * 1e3, "rank": (t3 - t2) * 1e3,
                            "intent_encode": encode_ms, "retrieve_search": retrieved[i][3],
                            "rank_forward": r.rank_ms},
            ))  # fmt: skip
        return out

    def batch_stats(self) -> dict[str, object]:
        """Sizes of the coalesced batches (requests per call to the three deployments)."""
        return self.stats.summary()

    @staticmethod
    def _fail(grpc_context, code: grpc.StatusCode, message: str) -> pb2.SearchResponse:
        grpc_context.set_code(code)
        grpc_context.set_details(message)
        return pb2.SearchResponse()
