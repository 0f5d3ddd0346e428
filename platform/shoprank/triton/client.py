"""TritonRankerClient: the pairwise ranker served by Triton, over ``tritonclient.grpc.aio``
(and :class:`TritonCrossClient`, the cross-encoder, with the same behaviour below).

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
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import numpy as np

from shoprank.triton import CROSS_MODEL_NAME, DEFAULT_MODEL_NAME
from shoprank.triton.errors import TritonUnavailableError, TritonVersionMismatchError

if TYPE_CHECKING:
    from shoprank.model.cross_encoder import CrossEncoder
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


class _TritonClient:
    """Async, batched Triton client of one shoprank model, with failover. Subclasses name the model's
    inputs (``INPUTS``: name, Triton dtype) and say how rows are counted, chunked and scored in process."""

    INPUTS: tuple[tuple[str, str], ...] = ()
    what = "model"  # in error messages
    default_model_name = DEFAULT_MODEL_NAME

    def __init__(
        self,
        url: str,
        *,
        model_name: str | None = None,
        expected_version: str | None = None,
        failover: Failover = "unavailable",
        fallback_model: Any = None,
        timeout_s: float = 1.0,
        retries: int = 2,
        backoff_s: float = 0.05,
        cooldown_s: float = 2.0,
        max_rows: int = 4096,
    ) -> None:
        if failover not in ("inprocess", "unavailable"):
            raise ValueError(f"failover must be 'inprocess' or 'unavailable', got {failover!r}")
        if failover == "inprocess" and fallback_model is None:
            raise ValueError(f"failover='inprocess' needs fallback_model (the in-process {self.what})")
        if timeout_s <= 0 or retries < 0 or max_rows < 1:
            raise ValueError("timeout_s must be > 0, retries >= 0 and max_rows >= 1")
        self.url = url
        self.model_name = model_name or self.default_model_name
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
            raise RuntimeError(f"{type(self).__name__} is closed")
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

    def __enter__(self) -> Self:
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

    # -- per model (subclasses) --------------------------------------------------------------
    def _rows(self, arrays: tuple[np.ndarray, ...]) -> int:
        raise NotImplementedError

    def _chunk(self, arrays: tuple[np.ndarray, ...], s: int, e: int) -> tuple[np.ndarray, ...]:
        """Rows ``s:e`` of ``arrays`` as one request's inputs."""
        raise NotImplementedError

    def _inprocess(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _fallback_tasks(self) -> list[str]:
        raise NotImplementedError

    # -- inference --------------------------------------------------------------------------
    async def _infer_chunk(self, *arrays: np.ndarray) -> dict:
        import tritonclient.grpc.aio as grpcclient

        inputs = []
        for (name, dtype), a in zip(self.INPUTS, arrays, strict=True):
            t = grpcclient.InferInput(name, list(a.shape), dtype)
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

    async def _attempt(self, *arrays: np.ndarray) -> RankerResult:
        await self._ensure_checked()
        n = self._rows(arrays)
        step = min(self.max_rows, self._max_batch) if self._max_batch > 0 else self.max_rows
        chunks = [self._infer_chunk(*self._chunk(arrays, s, min(n, s + step))) for s in range(0, n, step)]
        parts = await asyncio.gather(*chunks)
        version = parts[0]["__version__"]
        outputs = {t: np.concatenate([p[t] for p in parts]).astype(np.float32, copy=False) for t in self._tasks or []}
        return RankerResult(outputs, "triton", version)

    async def _triton(self, *arrays: np.ndarray) -> RankerResult:
        """Retries with exponential backoff; raises _TritonDown once every attempt has failed."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(self.backoff_s * (2 ** (attempt - 1)))
            self.stats.triton_calls += 1
            try:
                return await self._guarded(self._attempt(*arrays))
            except _TritonDown as e:
                self.stats.triton_errors += 1
                self.stats.last_error = str(e)
                last = e
        raise _TritonDown(str(last))

    def _empty(self) -> RankerResult:
        tasks = self._tasks or (self._fallback_tasks() if self.fallback_model is not None else [])
        return RankerResult({t: np.zeros(0, np.float32) for t in tasks}, "none", self.stats.served_version)

    def _down(self, reason: str) -> RankerResult:
        """Triton is down: in-process result or TritonUnavailableError, per ``failover``."""
        if self.failover == "unavailable":
            raise TritonUnavailableError(f"Triton {self.what} at {self.url} unavailable: {reason}")
        raise _Failover(reason)

    async def _run_async(self, arrays: tuple[np.ndarray, ...]) -> RankerResult:
        """Triton (or the failover) for prepared ``arrays``, awaitable from any event loop."""
        if self._rows(arrays) == 0:
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

    def _run(self, arrays: tuple[np.ndarray, ...]) -> RankerResult:
        """Sync :meth:`_run_async` (callable from any thread that is not this client's loop)."""
        if self._rows(arrays) == 0:
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

    async def _call(self, *arrays: np.ndarray) -> RankerResult:
        now = time.monotonic()
        if now < self._down_until:
            return self._down(f"circuit open after: {self.stats.last_error}")
        try:
            return await self._triton(*arrays)
        except _TritonDown as e:
            self._down_until = time.monotonic() + self.cooldown_s
            log.warning("Triton at %s down (%s); failover=%s", self.url, e, self.failover)
            return self._down(str(e))


class TritonRankerClient(_TritonClient):
    """The pairwise ranker (mixer + towers) served by Triton: embeddings and features in."""

    INPUTS = (("QUERY", "FP32"), ("ITEM", "FP32"), ("ITEM_NUM", "FP32"), ("MONTH", "FP32"))
    what = "ranker"
    default_model_name = DEFAULT_MODEL_NAME

    def __init__(self, url: str, *, fallback_model: MultiTaskModel | None = None, **options: Any) -> None:
        super().__init__(url, fallback_model=fallback_model, **options)

    def _rows(self, arrays: tuple[np.ndarray, ...]) -> int:
        return int(arrays[1].shape[0])

    def _chunk(self, arrays: tuple[np.ndarray, ...], s: int, e: int) -> tuple[np.ndarray, ...]:
        q, i, num, month = arrays
        q = q if q.shape[0] == 1 else q[s:e]
        if self._max_batch > 0 and q.shape[0] != e - s:  # batching model: rows are the batch dim
            q = np.ascontiguousarray(np.broadcast_to(q, (e - s, q.shape[1])))
        return q, i[s:e], num[s:e], month[s:e]

    def _fallback_tasks(self) -> list[str]:
        return list(self.fallback_model.pair_tasks)

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

    def _inprocess(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        q, i, num, month = arrays
        model = self.fallback_model
        assert model is not None
        dev = model.device
        with torch.inference_mode():
            qt = torch.as_tensor(q[0] if q.shape[0] == 1 else q, device=dev)
            raw = model.pair_outputs(
                qt, torch.as_tensor(i, device=dev), torch.as_tensor(num, device=dev), torch.as_tensor(month, device=dev)
            )
            return {t: v.float().cpu().numpy() for t, v in raw.items()}

    async def infer_async(
        self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray
    ) -> RankerResult:
        """Like :meth:`pair_outputs_async`, with the source and the model version."""
        return await self._run_async(self._prepare(q, i, item_num, month_feats))

    def infer(self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month_feats: np.ndarray) -> RankerResult:
        """Sync :meth:`infer_async` (callable from any thread that is not this client's loop)."""
        return self._run(self._prepare(q, i, item_num, month_feats))

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


class TritonCrossClient(_TritonClient):
    """The cross-encoder (issue 23's second phase) served by Triton: token ids in, raw head logits out.

    ``infer(input_ids, attention_mask, token_type_ids)`` takes the tokenizer's int [N, L] arrays
    (``CrossEncoder.tokenize``); chunks of ``max_rows`` pairs (at most the model's ``max_batch_size``)
    go concurrently, each cut to its longest pair. ``fallback_model`` is the in-process
    :class:`~shoprank.model.cross_encoder.CrossEncoder`.
    """

    INPUTS = (("INPUT_IDS", "INT64"), ("ATTENTION_MASK", "INT64"), ("TOKEN_TYPE_IDS", "INT64"))
    what = "cross-encoder"
    default_model_name = CROSS_MODEL_NAME

    def __init__(self, url: str, *, fallback_model: CrossEncoder | None = None, **options: Any) -> None:
        super().__init__(url, fallback_model=fallback_model, **options)

    def _rows(self, arrays: tuple[np.ndarray, ...]) -> int:
        return int(arrays[0].shape[0])

    def _chunk(self, arrays: tuple[np.ndarray, ...], s: int, e: int) -> tuple[np.ndarray, ...]:
        width = max(1, int(arrays[1][s:e].sum(1).max()))  # right padding only (the tokenizer's)
        return tuple(np.ascontiguousarray(a[s:e, :width]) for a in arrays)

    def _fallback_tasks(self) -> list[str]:
        return list(self.fallback_model.config.tasks)

    @staticmethod
    def _prepare(input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> tuple[np.ndarray, ...]:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        types = np.zeros_like(ids) if token_type_ids is None else np.ascontiguousarray(token_type_ids, dtype=np.int64)
        if ids.ndim != 2 or mask.shape != ids.shape or types.shape != ids.shape:
            raise ValueError(f"input_ids, attention_mask and token_type_ids must be [N, L] alike; got "
                             f"{ids.shape}, {mask.shape}, {types.shape}")  # fmt: skip
        return ids, mask, types

    def _inprocess(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        model = self.fallback_model
        assert model is not None
        with torch.inference_mode():
            raw = model(*(torch.as_tensor(a, device=model.device) for a in arrays))
        return {t: v.float().cpu().numpy() for t, v in raw.items()}

    def infer(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> RankerResult:
        """Raw head logits ``{task: float32 [N]}`` (as ``CrossEncoder.forward``), the source and the version."""
        return self._run(self._prepare(input_ids, attention_mask, token_type_ids))

    async def infer_async(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> RankerResult:
        """Awaitable :meth:`infer`."""
        return await self._run_async(self._prepare(input_ids, attention_mask, token_type_ids))

    def raw_outputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw logits of a tokenizer batch (``input_ids``/``attention_mask``/``token_type_ids``):
        the ``raw`` hook of :meth:`CrossEncoder.score`."""
        return self.infer(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).outputs


class _Failover(Exception):
    """Internal: take the in-process path (raised on the client loop, handled by the caller)."""
