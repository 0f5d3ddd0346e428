"""Helpers shared by the deployments: the batched-stage base class, batch stats, the ingress Coalescer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ray import serve

from shoprank.serve_app.metrics import METRICS, triton_failovers
from shoprank.serving.config import BatchSettings

if TYPE_CHECKING:
    from shoprank.model.multitask import MultiTaskModel

T = TypeVar("T")
R = TypeVar("R")


def set_torch_threads(n: int | None) -> None:
    """Pin torch's intra-op threads in this replica (Ray otherwise sets OMP_NUM_THREADS from num_cpus)."""
    if n:
        import torch

        torch.set_num_threads(int(n))
        os.environ["OMP_NUM_THREADS"] = str(n)


class BatchStats:
    """Counts of batch sizes seen by a ``@serve.batch`` method (exposed for tests and metrics)."""

    def __init__(self) -> None:
        self.hist: dict[int, int] = {}

    def record(self, size: int) -> None:
        self.hist[size] = self.hist.get(size, 0) + 1

    def summary(self) -> dict[str, object]:
        total = sum(self.hist.values())
        reqs = sum(k * v for k, v in self.hist.items())
        return {
            "batches": total,
            "requests": reqs,
            "max_batch": max(self.hist, default=0),
            "mean_batch": reqs / total if total else 0.0,
            "hist": dict(sorted(self.hist.items())),
        }


def replica_model(
    checkpoint: str | None, encoder: str, device: str | None, torch_threads: int | None
) -> tuple[MultiTaskModel, str]:
    """Pin torch threads and load the serving model (on CUDA when the replica has a GPU):
    ``(model, model_version)``."""
    from shoprank.serving.pipeline import load_serving_model

    set_torch_threads(torch_threads)
    model, _manifest, version = load_serving_model(checkpoint, encoder, device)
    return model, version


def items_in(calls: list[list[Any]]) -> int:
    """``batch_size_fn`` for methods called with a list of items: a batch counts its items."""
    return sum(len(c) for c in calls)


def per_call(calls: list[list[T]], fn: Callable[[list[T]], list[R]]) -> list[list[R]]:
    """Run ``fn`` once over the items of every call in a batch; hand each call its own results."""
    out = fn([x for c in calls for x in c])
    res, start = [], 0
    for c in calls:
        res.append(out[start : start + len(c)])
        start += len(c)
    return res


class BatchedStage(Generic[T, R]):
    """Base of the batched deployments (QueryIntent, CandidateRetriever, MultiTaskRanker).

    A call takes a list of items and gives one result per item; ``@serve.batch`` merges concurrent
    calls and :meth:`process` runs once over all their items. The batch settings are the
    deployment's ``user_config`` (:class:`~shoprank.serving.config.BatchSettings`, set by
    ``build_app``): Serve calls :meth:`reconfigure` when a replica starts and again on the live
    replicas whenever the user_config changes, so they change without new replicas. (The
    ``@serve.batch`` queue is per process, as is a Serve replica: one stage instance per process.)
    """

    def __init__(self) -> None:
        self.stats = BatchStats()

    def process(self, items: list[T]) -> list[R]:
        """The stage's work for one merged batch (one result per item, in order)."""
        raise NotImplementedError

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        settings = BatchSettings.model_validate(user_config or {})
        self._batch.set_max_batch_size(settings.max_batch_size)
        self._batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=items_in)
    async def _batch(self, calls: list[list[T]]) -> list[list[R]]:
        return per_call(calls, self._process)

    def _process(self, items: list[T]) -> list[R]:
        self.stats.record(len(items))
        METRICS.batch(type(self).__name__, len(items))
        before = triton_failovers(self)
        try:
            return self.process(items)
        finally:
            if before is not None:
                METRICS.failovers(type(self).__name__, (triton_failovers(self) or 0) - before)

    async def __call__(self, items: list[T]) -> list[R]:
        """One result per item. A call larger than ``max_batch_size`` (e.g. the ingress coalesces more
        than a lowered user_config allows) goes in parts, as ``@serve.batch`` rejects an oversized item."""
        size = self._batch._get_max_batch_size()
        if len(items) <= size:
            return await self._batch(items)
        parts = await asyncio.gather(*(self._batch(items[i : i + size]) for i in range(0, len(items), size)))
        return [r for part in parts for r in part]

    def batch_settings(self) -> dict[str, Any]:
        """The batch settings in force in this replica, and which replica (id, pid) this is."""
        return {
            "max_batch_size": self._batch._get_max_batch_size(),
            "batch_wait_timeout_s": self._batch._get_batch_wait_timeout_s(),
            "replica_id": serve.get_replica_context().replica_id.unique_id,
            "pid": os.getpid(),
        }

    def batch_stats(self) -> dict[str, object]:
        return self.stats.summary()

    async def ready(self) -> bool:
        """The ingress's readiness probe: a replica answers only once its model and index are loaded."""
        return True


class Coalescer:
    """Gathers concurrent calls of ``fn(items) -> results`` into batches of at most ``max_batch``.

    A batch forms only when one of ``slots`` is free, so calls that arrive while every slot is
    busy wait together and go out as one batch; a call that finds a free slot goes out at once
    (no added wait at low load). (Serve's ``@serve.batch`` forms batches as soon as items arrive
    and queues them behind ``max_concurrent_batches``, so a handler that mostly awaits other
    deployments sees batches of one.) ``fn`` returns one result per item; an exception it raises
    goes to every call of its batch.
    """

    def __init__(self, fn: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 16, slots: int = 2) -> None:
        self.fn, self.max_batch, self.free = fn, max(1, max_batch), max(1, slots)
        self.waiting: list[tuple[T, asyncio.Future]] = []
        self.tasks: set[asyncio.Task] = set()

    async def __call__(self, item: T) -> R:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append((item, fut))
        self._start()
        return await fut

    def _start(self) -> None:
        while self.free > 0 and self.waiting:
            batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
            batch = [(i, f) for i, f in batch if not f.cancelled()]  # e.g. past their deadline
            if not batch:
                continue
            self.free -= 1
            task = asyncio.ensure_future(self._run(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        try:
            results = await self.fn([i for i, _ in batch])
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
        except Exception as e:  # noqa: BLE001 - handed to the callers
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self.free += 1
            self._start()
