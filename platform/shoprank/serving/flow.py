"""The search flow, once: encode -> retrieve -> rank for a batch of validated queries.

Both runtimes call :func:`run_flow` with their three stages (see :mod:`shoprank.serving.stages`):

- in process, :class:`~shoprank.serving.pipeline.SearchPipeline` passes the components themselves
  (plain callables) and drives the flow with :func:`run_sync`;
- under Ray Serve, the ingress passes its deployment handles' ``remote`` (awaitables) and awaits it.

Error behaviour (the same in both): a query its stages reject as sent (e.g. unknown item ids)
comes back as an :class:`~shoprank.serving.validation.InvalidRequest` in its own slot, and the
rest of the batch is answered; any other exception from a stage fails the whole batch.

Deadlines: a query with a ``deadline`` (``time.monotonic()`` seconds, set by the ingress from the
caller's budget) that has passed when its batch reaches retrieval or ranking is dropped there (its
slot gets a :class:`DeadlineExpired`), so no stage computes an answer nobody waits for.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from shoprank.serving.stages import EncodedQuery, RankedList, RankJob, Retrieved, RetrieveJob, SearchResult
from shoprank.serving.validation import InvalidRequest, Query

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")

# A batched stage: one output per input, in order; sync, or returning an awaitable (a Serve handle).
Stage = Callable[[list[In]], list[Out] | Awaitable[list[Out]]]


@dataclass
class Stages:
    """The three stages of a search, by what they take and give."""

    encode: Stage[str, EncodedQuery]
    retrieve: Stage[RetrieveJob, Retrieved]
    rank: Stage[RankJob, RankedList]


async def _call(stage: Stage[In, Out], items: list[In]) -> list[Out]:
    out = stage(items)
    if inspect.isawaitable(out):
        out = await out
    return list(out)  # type: ignore[arg-type]


class DeadlineExpired(TimeoutError):
    """A query dropped by the flow because its deadline passed before a stage computed it."""


def _live(queries: list[Query], among: list[int]) -> list[int]:
    now = time.monotonic()
    return [i for i in among if queries[i].deadline is None or queries[i].deadline > now]


async def run_flow(
    stages: Stages, queries: list[Query], num_candidates: int
) -> list[SearchResult | InvalidRequest | DeadlineExpired]:
    """Search (or Rank, for queries with ``item_ids``) a batch: one call per stage for all of it."""
    t0 = time.perf_counter()
    encoded = await _call(stages.encode, [q.query for q in queries])
    t1 = time.perf_counter()
    live = _live(queries, list(range(len(queries))))
    search = [i for i in live if queries[i].item_ids is None]
    found: dict[int, Retrieved] = {}
    if search:
        filters = [None if queries[i].filters.is_empty() else queries[i].filters for i in search]
        jobs = [RetrieveJob(encoded[i].embedding, f, num_candidates, queries[i].query)
                for i, f in zip(search, filters, strict=True)]  # fmt: skip
        found = dict(zip(search, await _call(stages.retrieve, jobs), strict=True))
    t2 = time.perf_counter()
    live = _live(queries, live)
    rank_jobs = []
    for i in live:
        q, e = queries[i], encoded[i]
        r = found.get(i)  # Rank requests bring their ids and use the ranker's current index version
        rank_jobs.append(
            RankJob(
                q_emb=e.embedding, query=q.query, k=q.k, weights=q.weights, month=q.month,
                index_dir=r.index_dir if r else "", index_version=r.index_version if r else "",
                positions=r.positions if r else None, item_ids=q.item_ids, user_hash=q.user_hash,
                filtered=not q.filters.is_empty(), custom_weights=q.custom_weights,
            )
        )  # fmt: skip
    ranked = dict(zip(live, await _call(stages.rank, rank_jobs) if rank_jobs else [], strict=True))
    t3 = time.perf_counter()
    out: list[SearchResult | InvalidRequest | DeadlineExpired] = []
    for i, (q, e) in enumerate(zip(queries, encoded, strict=True)):
        r = ranked.get(i)
        if r is None:
            out.append(DeadlineExpired("dropped before it was computed: its deadline had passed"))
            continue
        if r.error:
            out.append(InvalidRequest(r.error))
            continue
        timings = {
            "intent": (t1 - t0) * 1e3, "retrieve": (t2 - t1) * 1e3, "rank": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3,
            "intent_encode": e.encode_ms, "retrieve_search": found[i].search_ms if i in found else 0.0,
            "rank_forward": r.rank_ms,
        }  # fmt: skip
        if r.rerank_ms:  # the cross-encoder phase ran inside the rank stage (shoprank.serving.rerank)
            timings["rerank"] = r.rerank_ms
        out.append(
            SearchResult(
                items=r.items, intent=e.intent, model_version=r.model_version, index_version=r.index_version,
                batch_size=r.batch_size, zero_shot=r.zero_shot, weights=q.weights, num_candidates=r.num_candidates,
                timings_ms=timings, signals=r.signals, degraded=r.degraded, degraded_reason=r.degraded_reason,
            )
        )  # fmt: skip
    return out


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose awaits all complete at once (plain callables as stages), without an
    event loop, so the in-process pipeline also works from inside a running loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a stage returned a pending awaitable; await run_flow instead of run_sync")
