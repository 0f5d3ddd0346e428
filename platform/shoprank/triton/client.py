"""TritonRankerClient: the pairwise ranker served by Triton, over ``tritonclient.grpc.aio``.

``pair_outputs(q, i, item_num, month_feats)`` has the signature and the result of
``MultiTaskModel.pair_outputs`` (NumPy in, ``{task: float32 [N]}`` out), so a ranker can swap
its in-process model for Triton. Behaviour:

- **batched**: all N candidates go in one request, and more than ``max_rows`` (or the
  model's ``max_batch_size``) are split into chunks sent concurrently; Triton's dynamic
  batcher then scores the rows of concurrent requests in one forward pass (QUERY is sent
  per row then; without batching it is sent once as [1, d] and broadcast server-side);
- **bounded**: each attempt has ``timeout_s``; retriable failures (UNAVAILABLE,
  DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, connection errors) are retried ``retries`` times with
  exponential backoff; the whole call never outlives its budget — no hangs;
- **failover**: when Triton is down or slow, ``failover="inprocess"`` scores with
  ``fallback_model`` (a MultiTaskModel) and ``failover="unavailable"`` raises
  :class:`TritonUnavailableError` (the gRPC layer maps it to ``UNAVAILABLE``). After a failure
  Triton is skipped for ``cooldown_s`` (circuit breaker), so a dead Triton costs one timeout,
  not one per request;
- **versioned**: Triton's config parameter ``model_version`` and every response's
  ``MODEL_VERSION`` are checked against ``expected_version``; a mismatch raises
  :class:`TritonVersionMismatchError` (never silently served).

All gRPC traffic runs on one private event loop thread; the async variant can be awaited
from any event loop (e.g. a Ray Serve replica's) and the sync one from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from shoprank.triton import DEFAULT_MODEL_NAME
from shoprank.triton.errors import TritonUnavailableError, TritonVersionMismatchError

if TYPE_CHECKING:
    from shoprank.model.multitask import MultiTaskModel

log = logging.getLogger(__name__)
T = TypeVar("T")
Failover = Literal["inprocess", "unavailable"]


@dataclass
class RankerResult:
    """Raw outputs plus where they came from (``triton`` or ``inprocess``) and the model version."""

    outputs: dict[str, np.ndarray]
    source: str
    model_version: str | None


@dataclass
class ClientStats:
    triton_calls: int = 0
    triton_errors: int = 0
    retries: int = 0
    failovers: int = 0
    last_error: str | None = None
    served_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _TritonDown(Exception):
    """Internal: one attempt failed in a way that failover covers."""


class TritonRankerClient:
    """Async, batched Triton client for the shoprank pairwise ranker, with failover."""

    def __init__(
        self,
        url: str,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        expected_version: str | None = None,
        failover: Failover = "unavailable",
        fallback_model: MultiTaskModel | None = None,
        timeout_s: float = 1.0,
        retries: int = 2,
        backoff_s: float = 0.05,
        cooldown_s: float = 2.0,
        max_rows: int = 4096,
    ) -> None:
        if failover not in ("inprocess", "unavailable"):
            raise ValueError(f"failover must be 'inprocess' or 'unavailable', got {failover!r}")
        if failover == "inprocess" and fallback_model is None:
            raise ValueError("failover='inprocess' needs fallback_model (the in-process MultiTaskModel)")
        if timeout_s <= 0 or retries < 0 or max_rows < 1:
            raise ValueError("timeout_s must be > 0, retries >= 0 and max_rows >= 1")
        self.url = url
        self.model_name = model_name
        self.expected_version = expected_version
        self.failover = failover
        self.fallback_model = fallback_model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self.max_rows = max_rows
        self.stats = ClientStats()
        self._down_until = 0.0
        self._version_checked = False
        self._tasks: list[str] | None = None
        self._max_batch = 0  # the model's max_batch_size (0: no dynamic batching)
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="triton-client-loop", daemon=True)
        self._thread.start()
        self._client = self._submit(self._make_client()).result(10)

    # -- plumbing ---------------------------------------------------------------------------
    async def _make_client(self) -> Any:
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

        channel_args = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            # reconnect quickly once a restarted Triton listens again (gRPC's default backoff
            # grows to 120 s, which would keep us failing over long after Triton is back)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        return grpcclient.InferenceServerClient(self.url, channel_args=channel_args)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._closed:
            coro.close()
            raise RuntimeError("TritonRankerClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def budget_s(self) -> float:
        """Upper bound of one call's time on Triton: every attempt plus every backoff."""
        backoffs = sum(self.backoff_s * (2**k) for k in range(self.retries))
        return (self.retries + 1) * self.timeout_s + backoffs

    def close(self) -> None:
        """Close the channel and stop the private loop. Idempotent."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self._submit(self._client.close()).result(5)
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> TritonRankerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- version ----------------------------------------------------------------------------
    async def _fetch_config(self) -> tuple[str | None, list[str], int]:
        cfg = await self._client.get_model_config(self.model_name, as_json=True, client_timeout=self.timeout_s)
        cfg = cfg.get("config", cfg)
        served = cfg.get("parameters", {}).get("model_version", {}).get("string_value")
        tasks = [o["name"] for o in cfg.get("output", []) if o["name"] != "MODEL_VERSION"]
        return served, tasks, int(cfg.get("max_batch_size", 0) or 0)

    async def _ensure_checked(self) -> None:
        if self._version_checked:
            return
        served, tasks, max_batch = await self._fetch_config()
        self._tasks = tasks
        self._max_batch = max_batch
        self.stats.served_version = served
        if self.expected_version is not None and served != self.expected_version:
            raise TritonVersionMismatchError(self.expected_version, str(served), f"{self.url}/{self.model_name}")
        self._version_checked = True

    def check_version(self) -> str | None:
        """Fetch Triton's model_version now; raise on mismatch or TritonUnavailableError when down."""
        self._version_checked = False
        try:
            self._submit(self._guarded(self._ensure_checked())).result(self.timeout_s + 5)
        except (_TritonDown, FutureTimeout) as e:
            raise TritonUnavailableError(f"Triton at {self.url} is unavailable ({e})") from e
        return self.stats.served_version

    # -- inference --------------------------------------------------------------------------
    async def _guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        """One attempt with a hard deadline; failures that failover covers become _TritonDown."""
        from tritonclient.utils import InferenceServerException

        try:
            return await asyncio.wait_for(coro, self.timeout_s + 0.05)
        except TritonVersionMismatchError:
            raise
        except InferenceServerException as e:
            status = str(e.status() or "").removeprefix("StatusCode.")
            if status == "INVALID_ARGUMENT" or "must be" in str(e.message()):
                raise ValueError(f"Triton rejected the request: {e.message()}") from e
            raise _TritonDown(f"{status or 'error'}: {e.message()}") from e
        except TimeoutError as e:
            raise _TritonDown(f"no answer within {self.timeout_s}s") from e
        except (ConnectionError, OSError) as e:
            raise _TritonDown(f"{type(e).__name__}: {e}") from e

    async def _infer_chunk(self, q: np.ndarray, i: np.ndarray, num: np.ndarray, month: np.ndarray) -> dict:
        import tritonclient.grpc.aio as grpcclient

        if self._max_batch > 0 and q.shape[0] != i.shape[0]:  # batching model: rows are the batch dim
            q = np.ascontiguousarray(np.broadcast_to(q, i.shape))
        inputs = []
        for name, a in (("QUERY", q), ("ITEM", i), ("ITEM_NUM", num), ("MONTH", month)):
            t = grpcclient.InferInput(name, list(a.shape), "FP32")
            t.set_data_from_numpy(a)
            inputs.append(t)
        outputs = [grpcclient.InferRequestedOutput(n) for n in [*(self._tasks or []), "MODEL_VERSION"]]
        res = await self._client.infer(
            self.model_name, inputs, outputs=outputs, client_timeout=self.timeout_s, timeout=int(self.timeout_s * 1e6)
        )
        served = res.as_numpy("MODEL_VERSION")
        served_v = served.reshape(-1)[0].decode() if served is not None and served.size else None
        if self.expected_version is not None and served_v != self.expected_version:
            self._version_checked = False
            raise TritonVersionMismatchError(self.expected_version, str(served_v), f"{self.url}/{self.model_name}")
        out = {t: res.as_numpy(t).reshape(-1) for t in self._tasks or []}
        return {"__version__": served_v, **out}

    async def _attempt(self, q: np.ndarray, i: np.ndarray, num: np.ndarray, month: np.ndarray) -> RankerResult:
        await self._ensure_checked()
        n = i.shape[0]
        step = min(self.max_rows, self._max_batch) if self._max_batch > 0 else self.max_rows
        chunks = []
        for s in range(0, n, step):
            e = min(n, s + step)
            qc = q if q.shape[0] == 1 else q[s:e]
            chunks.append(self._infer_chunk(qc, i[s:e], num[s:e], month[s:e]))
        parts = await asyncio.gather(*chunks)
        version = parts[0]["__version__"]
        outputs = {t: np.concatenate([p[t] for p in parts]).astype(np.float32, copy=False) for t in self._tasks or []}
        return RankerResult(outputs, "triton", version)

    async def _triton(self, q: np.ndarray, i: np.ndarray, num: np.ndarray, month: np.ndarray) -> RankerResult:
        """Retries with exponential backoff; raises _TritonDown once every attempt has failed."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(self.backoff_s * (2 ** (attempt - 1)))
            self.stats.triton_calls += 1
            try:
                return await self._guarded(self._attempt(q, i, num, month))
            except _TritonDown as e:
                self.stats.triton_errors += 1
                self.stats.last_error = str(e)
                last = e
        raise _TritonDown(str(last))

    @staticmethod
    def _prepare(q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray) -> tuple[np.ndarray, ...]:
        i = np.ascontiguousarray(i, dtype=np.float32)
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        num = np.ascontiguousarray(item_num, dtype=np.float32)
        month = np.ascontiguousarray(month_feats, dtype=np.float32)
        n = i.shape[0]
        if i.ndim != 2 or q.ndim != 2 or q.shape[1] != i.shape[1] or q.shape[0] not in (1, n):
            raise ValueError(f"q must be [d] or [N, d] and i [N, d]; got {q.shape} and {i.shape}")
        if num.shape != (n, 3) or month.shape != (n, 2):
            raise ValueError(f"item_num must be [N, 3] and month_feats [N, 2]; got {num.shape}, {month.shape}")
        return q, i, num, month

    def _inprocess(self, q: np.ndarray, i: np.ndarray, num: np.ndarray, month: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        model = self.fallback_model
        assert model is not None
        dev = model.device
        with torch.inference_mode():
            qt = torch.as_tensor(q[0] if q.shape[0] == 1 else q, device=dev)
            raw = model.pair_outputs(
                qt, torch.as_tensor(i, device=dev), torch.as_tensor(num, device=dev), torch.as_tensor(month, device=dev)
            )
            return {t: v.float().cpu().numpy() for t, v in raw.items()}

    def _empty(self) -> RankerResult:
        tasks = self._tasks or (list(self.fallback_model.pair_tasks) if self.fallback_model is not None else [])
        return RankerResult({t: np.zeros(0, np.float32) for t in tasks}, "none", self.stats.served_version)

    def _down(self, reason: str) -> RankerResult:
        """Triton is down: in-process result or TritonUnavailableError, per ``failover``."""
        if self.failover == "unavailable":
            raise TritonUnavailableError(f"Triton ranker at {self.url} unavailable: {reason}")
        raise _Failover(reason)

    async def infer_async(
        self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray
    ) -> RankerResult:
        """Like :meth:`pair_outputs_async`, with the source and the model version."""
        arrays = self._prepare(q, i, item_num, month_feats)
        if arrays[1].shape[0] == 0:
            return self._empty()
        fut = self._submit(self._call(*arrays))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.budget_s + 2.0)
        except TimeoutError:  # belt and braces: the client loop itself is stuck
            fut.cancel()
            try:
                self._down(f"no result within {self.budget_s + 2.0:.1f}s")
            except _Failover:
                pass
            self.stats.failovers += 1
            outputs = await asyncio.to_thread(self._inprocess, *arrays)
            return RankerResult(outputs, "inprocess", self.expected_version)
        except _Failover:
            self.stats.failovers += 1
            outputs = await asyncio.to_thread(self._inprocess, *arrays)
            return RankerResult(outputs, "inprocess", self.expected_version)

    def infer(self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray) -> RankerResult:
        """Sync :meth:`infer_async` (callable from any thread that is not this client's loop)."""
        arrays = self._prepare(q, i, item_num, month_feats)
        if arrays[1].shape[0] == 0:
            return self._empty()
        fut = self._submit(self._call(*arrays))
        try:
            return fut.result(self.budget_s + 2.0)
        except FutureTimeout:  # belt and braces: the loop itself is stuck
            fut.cancel()
            try:
                self._down(f"no result within {self.budget_s + 2.0:.1f}s")
            except _Failover:
                pass
        except _Failover:
            pass
        self.stats.failovers += 1
        return RankerResult(self._inprocess(*arrays), "inprocess", self.expected_version)

    async def _call(self, q: np.ndarray, i: np.ndarray, num: np.ndarray, month: np.ndarray) -> RankerResult:
        now = time.monotonic()
        if now < self._down_until:
            return self._down(f"circuit open after: {self.stats.last_error}")
        try:
            return await self._triton(q, i, num, month)
        except _TritonDown as e:
            self._down_until = time.monotonic() + self.cooldown_s
            log.warning("Triton at %s down (%s); failover=%s", self.url, e, self.failover)
            return self._down(str(e))

    async def pair_outputs_async(
        self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Raw ranker outputs ``{task: float32 [N]}``, as ``MultiTaskModel.pair_outputs``."""
        return (await self.infer_async(q, i, item_num, month_feats)).outputs

    def pair_outputs(
        self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Sync :meth:`pair_outputs_async`."""
        return self.infer(q, i, item_num, month_feats).outputs


class _Failover(Exception):
    """Internal: take the in-process path (raised on the client loop, handled by the caller)."""
