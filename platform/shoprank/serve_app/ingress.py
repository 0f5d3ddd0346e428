"""SearchIngress: the gRPC ingress (Serve's native gRPC proxy) implementing shoprank.v1.SearchService.

Methods are looked up by RPC name: ``Search``, ``Rank`` and ``Feedback`` (shoprank.v1.SearchService) and
``Check``/``Watch`` (grpc.health.v1.Health: readiness of the whole graph and the store,
:mod:`shoprank.serve_app.health`). Both services are registered with the proxy by
:mod:`shoprank.serving.protos`, whose request deserializers hand a request that is over the size
limit or does not parse on as an ``UnreadableRequest``: ``INVALID_ARGUMENT`` here, never gRPC's
``UNKNOWN``. Server reflection is Serve's own (``gRPCOptions.enable_reflection``).

The search itself is :func:`shoprank.serving.flow.run_flow` (the flow the in-process pipeline
runs too), with the three deployment handles as its stages. Concurrent requests are coalesced:
those waiting at the same moment reach QueryIntent, CandidateRetriever and MultiTaskRanker as one
call each (``Coalescer``), so Serve's per-call cost is paid per batch, not per request.

Every Search/Rank response carries a fresh ``request_id`` (also in the ingress's log line), which
callers echo in ``Feedback`` events. ``Feedback`` validates the whole batch
(:func:`shoprank.store.events.parse_events`), writes it to the online store in one atomic script
call (:class:`shoprank.store.writer.AsyncStoreWriter`; the store fsyncs its append-only file
before it answers) and only then answers OK. With ``served_log_dir`` set, every response and every
acknowledged Feedback batch also goes to the served-results log (:mod:`shoprank.feedback.served_log`;
never blocking), which is written out when the replica shuts down.

Status codes: INVALID_ARGUMENT (validation, with the message; for Feedback ``events[i].field``
and nothing stored; a request over ``$SHOPRANK_MAX_REQUEST_BYTES`` or that does not parse),
UNAUTHENTICATED (bearer token), DEADLINE_EXCEEDED (server-side budget
``request_timeout_s``, or less: the caller's ``shoprank-timeout-ms``), RESOURCE_EXHAUSTED (shed by
admission control, :mod:`shoprank.serve_app.admission`, with trailing ``retry-after-ms``; or Serve's
bounded queue), UNAVAILABLE (a downstream replica failed twice: a Search/Rank is retried once; for
Feedback: the store unreachable or the write unconfirmed, nothing acknowledged, retry),
FAILED_PRECONDITION (Feedback on an app with no
store configured). Status messages quote at most a short prefix of any request value and are capped
at ``MAX_STATUS_MESSAGE`` characters; every refused request is logged with its code and the hashed
user (:mod:`shoprank.serve_app.request_log`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle

from shoprank.feedback.served_log import open_served_log
from shoprank.hashing import hash_id
from shoprank.serve_app.admission import Admission
from shoprank.serve_app.common import BatchStats, Coalescer
from shoprank.serve_app.health import GraphHealth, Readiness
from shoprank.serve_app.metrics import METRICS
from shoprank.serve_app.request_log import LogFlusher, flush_serve_logs, log_refused
from shoprank.serve_app.tracing import tag_request
from shoprank.serving.auth import check_token, resolve_token
from shoprank.serving.client import RETRY_AFTER_HEADER, TIMEOUT_HEADER
from shoprank.serving.config import ServingConfig
from shoprank.serving.flow import DeadlineExpired, Stages, run_flow
from shoprank.serving.pipeline import to_response
from shoprank.serving.protos import UnreadableRequest, pb2
from shoprank.serving.stages import SearchResult
from shoprank.serving.validation import InvalidRequest, Query, reject_unknown_fields, validate_rank, validate_search
from shoprank.store.config import StoreConfig
from shoprank.store.errors import StoreUnavailable
from shoprank.store.events import InvalidEvent, parse_events
from shoprank.store.writer import AsyncStoreWriter

log = logging.getLogger("ray.serve")


def downstream_failure(err: BaseException) -> grpc.StatusCode | None:
    """The status for a failure of the graph rather than of the request: ``UNAVAILABLE`` when a
    downstream replica (or its node, or Serve's route to it) failed (worth one retry, and retryable
    for the caller), ``RESOURCE_EXHAUSTED`` when a downstream queue is full; None for anything else."""
    import ray.exceptions as rex
    from ray.serve import exceptions as sex

    lost = (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.OwnerDiedError,
            rex.LocalRayletDiedError, rex.RpcError, sex.DeploymentUnavailableError, sex.ReplicaUnavailableError,
            grpc.aio.AioRpcError, ConnectionError)  # fmt: skip
    seen = 0
    while err is not None and seen < 5:  # Ray wraps errors raised in other processes (RayTaskError.cause)
        if isinstance(err, sex.BackPressureError):
            return grpc.StatusCode.RESOURCE_EXHAUSTED
        if isinstance(err, lost):
            return grpc.StatusCode.UNAVAILABLE
        err, seen = getattr(err, "cause", None) or err.__cause__, seen + 1
    return None


def request_budget(metadata, server_timeout_s: float) -> float:
    """Seconds this request may take: the server's ``request_timeout_s``, or less when the caller sent
    its own timeout (``shoprank-timeout-ms``: Serve's proxy does not forward gRPC deadlines)."""
    for key, value in metadata:
        if key == TIMEOUT_HEADER:
            try:
                return max(0.001, min(server_timeout_s, float(value) / 1000))
            except ValueError:
                break
    return server_timeout_s


HEALTH_SERVICES = ("", "shoprank.v1.SearchService")  # what Check/Watch answer for
MAX_STATUS_MESSAGE = 1000  # characters of a status message (gRPC sends it in a size-limited trailer)


@serve.deployment(
    name="SearchIngress",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=1024,  # far above what admission admits: the ingress sheds, Serve's proxy never backs off
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
        store_url: str | None = None,
        store: dict | None = None,
    ) -> None:
        self.store_url, self.store_cfg = store_url, StoreConfig.model_validate(store or {})
        self._writer: AsyncStoreWriter | None = None  # made on first use, on the replica's event loop
        self.stages = Stages(encode=intent.remote, retrieve=retriever.remote, rank=ranker.remote)
        self.cfg = ServingConfig.model_validate(config or {})
        self.token = resolve_token(token, token_env)
        self.stats = BatchStats()
        self.coalesce = Coalescer(self._run_batch, self.cfg.max_batch_size, self.cfg.ingress_batches_in_flight)
        self.served_log = open_served_log(self.cfg.served_log_dir)  # None: off; never blocks a request
        self.log_flusher = LogFlusher(interval_s=1.0)  # request lines reach the log file within a second
        probes = {"QueryIntent": intent.ready.remote, "CandidateRetriever": retriever.ready.remote,
                  "MultiTaskRanker": ranker.ready.remote}  # fmt: skip
        if store_url is not None:
            probes["store"] = lambda: self._store().ping()
        self.health = GraphHealth(probes)
        self._serving: bool | None = None  # the last readiness logged
        self.retries = 0  # requests retried after a downstream replica failed
        self.admission = (
            Admission(
                self.cfg.admission_target_wait_s, self.cfg.admission_min_in_flight, self.cfg.admission_max_in_flight
            )
            if self.cfg.admission_target_wait_s > 0
            else None
        )

    # -- shoprank.v1.SearchService ----------------------------------------------------------
    async def Search(self, request: pb2.SearchRequest, grpc_context) -> pb2.SearchResponse:  # noqa: N802
        return await self._serve(request, grpc_context, rank=False)

    async def Rank(self, request: pb2.RankRequest, grpc_context) -> pb2.SearchResponse:  # noqa: N802
        return await self._serve(request, grpc_context, rank=True)

    async def Feedback(self, request: pb2.FeedbackRequest, grpc_context) -> pb2.FeedbackResponse:  # noqa: N802
        def fail(code: grpc.StatusCode, message: str) -> pb2.FeedbackResponse:
            user = request.events[0].user_id if isinstance(request, pb2.FeedbackRequest) and request.events else ""
            return self._fail(grpc_context, code, message, "Feedback", uuid.uuid4().hex, user, pb2.FeedbackResponse())

        denied = check_token(self.token, grpc_context.invocation_metadata())
        if denied:
            return fail(grpc.StatusCode.UNAUTHENTICATED, denied)
        if isinstance(request, UnreadableRequest):
            return fail(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            reject_unknown_fields(request, "FeedbackRequest")
            for i, e in enumerate(request.events):
                reject_unknown_fields(e, f"events[{i}]")
            events = parse_events(request.events, self.store_cfg)
        except (InvalidRequest, InvalidEvent) as e:
            return fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if self.store_url is None:
            return fail(grpc.StatusCode.FAILED_PRECONDITION,
                        "no online store configured (the app's store_url / `shoprank serve --store`)")  # fmt: skip
        try:  # the client's own timeouts bound this; wait_for is the backstop
            res = await asyncio.wait_for(self._store().write(events), timeout=self.store_cfg.timeout_s * 3)
        except (StoreUnavailable, TimeoutError) as e:
            log.warning("Feedback: %d events not stored: %s", len(events), e)
            msg = str(e) or "online store did not answer in time"
            return fail(grpc.StatusCode.UNAVAILABLE, f"{msg}; not acknowledged, retry")
        if self.served_log is not None:  # only what the store acknowledged
            self.served_log.log_feedback(events)
        return pb2.FeedbackResponse(accepted=res.accepted, duplicates=res.duplicates)

    # -- grpc.health.v1.Health: readiness of the whole graph (shoprank.serve_app.health) -------
    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context) -> health_pb2.HealthCheckResponse:  # noqa: N802
        if isinstance(request, UnreadableRequest):
            grpc_context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            grpc_context.set_details(request.reason)
            return health_pb2.HealthCheckResponse()
        if request.service not in HEALTH_SERVICES:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service[:80]!r}")
            return health_pb2.HealthCheckResponse()
        return self._health_response(await self.health.check())

    async def Watch(self, request: health_pb2.HealthCheckRequest, grpc_context) -> AsyncIterator:  # noqa: N802
        """The current status, then one message per change, until the caller cancels."""
        if isinstance(request, UnreadableRequest) or request.service not in HEALTH_SERVICES:
            yield await self.Check(request, grpc_context)
            return
        async for state in self.health.watch():
            yield self._health_response(state)

    def _health_response(self, state: Readiness) -> health_pb2.HealthCheckResponse:
        if state.serving != self._serving:  # log each change once
            self._serving = state.serving
            log.info("readiness: %s%s", "SERVING" if state.serving else "NOT_SERVING",
                     "".join(f"; {k}: {v}" for k, v in state.problems.items()))  # fmt: skip
        status = health_pb2.HealthCheckResponse.SERVING if state.serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)

    def _store(self) -> AsyncStoreWriter:
        """The store client, made on first use (on the replica's event loop)."""
        if self._writer is None:
            assert self.store_url is not None
            self._writer = AsyncStoreWriter(self.store_url, self.store_cfg)
        return self._writer

    # -- the pipeline through handles -------------------------------------------------------
    async def _serve(self, request, grpc_context, *, rank: bool) -> pb2.SearchResponse:
        t0 = time.perf_counter()
        request_id = uuid.uuid4().hex
        method = "Rank" if rank else "Search"
        tag_request(request_id, method)

        def fail(code: grpc.StatusCode, message: str) -> pb2.SearchResponse:
            user = "" if isinstance(request, UnreadableRequest) else request.user_id
            return self._fail(grpc_context, code, message, method, request_id, user)

        denied = check_token(self.token, grpc_context.invocation_metadata())
        if denied:
            return fail(grpc.StatusCode.UNAUTHENTICATED, denied)
        if isinstance(request, UnreadableRequest):  # over the size limit, or bytes that do not parse
            return fail(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            q = validate_rank(request, self.cfg) if rank else validate_search(request, self.cfg)
        except InvalidRequest as e:
            return fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        t_valid = time.perf_counter()
        budget = request_budget(grpc_context.invocation_metadata(), self.cfg.request_timeout_s)
        retry_after = self.admission.admit(budget) if self.admission is not None else None
        if retry_after is not None:  # shed at once: the graph would not serve it within its wait target
            grpc_context.set_trailing_metadata([(RETRY_AFTER_HEADER, str(int(retry_after * 1000)))])
            busy = f"overloaded, shed ({self.admission.in_flight} in flight); retry after {retry_after:.2f}s"
            return fail(grpc.StatusCode.RESOURCE_EXHAUSTED, busy)
        q.deadline = time.monotonic() + budget  # the flow drops it between stages once this has passed
        try:
            res = await asyncio.wait_for(self._run(q), timeout=budget)
        except InvalidRequest as e:
            return fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except TimeoutError:
            return fail(grpc.StatusCode.DEADLINE_EXCEEDED, f"not served within its {budget:.3g}s deadline")
        except Exception as e:  # errors that name their status, e.g. Triton down -> UNAVAILABLE
            cause = getattr(e, "cause", None) or e  # Ray wraps errors raised in other deployments
            status = getattr(cause, "grpc_status", None)
            if status is not None and hasattr(grpc.StatusCode, status):
                return fail(getattr(grpc.StatusCode, status), str(cause))
            code = downstream_failure(e)  # UNAVAILABLE: retried once already (_run); the caller may retry
            if code is None:
                raise
            return fail(code, f"the search graph could not serve it ({type(cause).__name__}); retry later")
        finally:
            if self.admission is not None:
                self.admission.release()
        res.timings_ms["validate"] = (t_valid - t0) * 1e3
        res.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        log.info(
            "%s id=%s user=%s k=%d candidates=%d batch=%d index=%s signals=%s%s %.1fms",
            method, request_id, q.user_hash or "-", q.k, res.num_candidates, res.batch_size,
            res.index_version, ",".join(res.signals) or "-", " DEGRADED" if res.degraded else "",
            res.timings_ms["total"],
        )  # fmt: skip
        METRICS.response(method, res)
        resp = to_response(res, pb2)
        resp.request_id = request_id
        if self.served_log is not None:
            self.served_log.log_result(request_id, q, res, "rank" if rank else "search")
        return resp

    async def _run(self, q: Query) -> SearchResult:
        """``q`` through the graph; once more if a downstream replica failed (Search and Rank are
        idempotent; Serve routes the retry to a live replica), within the caller's deadline."""
        try:
            res = await self.coalesce(q)
        except Exception as e:
            if downstream_failure(e) != grpc.StatusCode.UNAVAILABLE:
                raise
            log.warning("retrying a request once: %s", str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            self.retries += 1
            METRICS.retry("Search" if q.item_ids is None else "Rank")
            res = await self.coalesce(q)
        if isinstance(res, InvalidRequest | DeadlineExpired):
            raise res
        return res

    # Concurrent requests are coalesced (``Coalescer``): one call to each deployment per batch
    # instead of one per request, so Serve's per-call cost is paid per batch. Several batches may
    # be in flight at once (``ingress_batches_in_flight``, default 2: one encoding while another ranks).
    async def _run_batch(self, qs: list[Query]) -> list[SearchResult | InvalidRequest | DeadlineExpired]:
        self.stats.record(len(qs))
        METRICS.batch("ingress", len(qs))
        return await run_flow(self.stages, qs, self.cfg.num_candidates)

    def batch_stats(self) -> dict[str, object]:
        """Sizes of the coalesced batches (requests per call to the three deployments)."""
        return self.stats.summary()

    def served_log_stats(self) -> dict[str, object] | None:
        """The served-results log's counters (logged, dropped, written, ...), None when it is off."""
        return None if self.served_log is None else self.served_log.stats()

    def __del__(self) -> None:  # Serve calls it when the replica shuts down: write what is buffered
        if getattr(self, "served_log", None) is not None:
            self.served_log.close()
        if getattr(self, "log_flusher", None) is not None:
            self.log_flusher.close()
        else:
            flush_serve_logs()

    @staticmethod
    def _fail(grpc_context, code: grpc.StatusCode, message: str, method: str, request_id: str, user_id: str,
              empty=None):  # fmt: skip
        """Answer with ``code`` (the message capped at MAX_STATUS_MESSAGE characters) and log the refusal."""
        if len(message) > MAX_STATUS_MESSAGE:
            message = message[: MAX_STATUS_MESSAGE - 3] + "..."
        log_refused(method, request_id, code.name, message, hash_id(user_id) if user_id else None)
        METRICS.refused(method, code.name)
        grpc_context.set_code(code)
        grpc_context.set_details(message)
        return pb2.SearchResponse() if empty is None else empty
