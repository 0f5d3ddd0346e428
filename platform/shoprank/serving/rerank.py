"""The cross-encoder phase of a search (issue 23): the rank stage's top N re-scored by a cross-encoder.

``serving.rerank_top_n`` > 0 with ``serving.cross_encoder_dir`` turns it on. The rank stage then runs
as *rank, then rerank*: :func:`rank_then_rerank` in process (``SearchPipeline``), the
``RankThenRerank`` router in front of the ``CrossEncoderReranker`` deployment under Serve
(:mod:`shoprank.serve_app.reranker`); both hand each ranked list to :class:`Reranker` as a
:class:`~shoprank.serving.stages.RerankJob`, so what is served is one implementation.

:class:`Reranker` scores the top N items of every list of a batch in one batched cross-encoder
pass (query + the item's ``title | category path``), orders them by ``serving.rerank_score``
(the cross-encoder's relevance, 0..1, or click probability), and leaves the tail as the first phase
ranked it. Every reranked item gains ``cross_relevance``/``cross_click`` in its ``scores``; its
``score`` stays the first phase's, its ``rank`` is its new place. Measured in
bench/results/cross_encoder.md (quality) and docs/cross_encoder.md (latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from shoprank.model.cross_encoder import CrossEncoder, cross_version, load_cross_encoder
from shoprank.model.text import item_text
from shoprank.serving.config import ServingConfig
from shoprank.serving.stages import RankedList, RankJob, RerankJob


class Reranker:
    """The rerank stage: a batch of :class:`RerankJob` -> one reordered :class:`RankedList` each."""

    def __init__(self, model: CrossEncoder, version: str = "", score: str = "relevance", batch_size: int = 64) -> None:
        if score not in model.config.tasks:
            raise ValueError(f"rerank_score {score!r}: the cross-encoder has heads {model.config.tasks}")
        self.model, self.version, self.score, self.batch_size = model, version, score, batch_size

    @classmethod
    def load(cls, directory: str | Path, score: str = "relevance", device: str = "cpu") -> Reranker:
        model, manifest = load_cross_encoder(directory, device)
        return cls(model, cross_version(manifest), score)

    def __call__(self, jobs: list[RerankJob]) -> list[RankedList]:
        t0 = time.perf_counter()
        queries, texts, spans = [], [], []
        for job in jobs:
            n = 0 if job.ranked.error else min(job.top_n, len(job.ranked.items))
            head = job.ranked.items[:n]
            queries += [job.query] * n
            texts += [item_text(it.get("title"), None, it.get("category_path")) for it in head]
            spans.append((len(texts) - n, len(texts)))
        scored = self.model.score(queries, texts, self.batch_size) if texts else {}
        elapsed = (time.perf_counter() - t0) * 1e3
        out = []
        for job, (a, b) in zip(jobs, spans, strict=True):
            if a == b:
                keep = job.ranked.items[: job.k] if job.k > 0 else job.ranked.items
                out.append(replace(job.ranked, items=keep) if len(keep) < len(job.ranked.items) else job.ranked)
                continue
            rel = scored.get("relevance", np.full(len(texts), np.nan))[a:b]
            click = scored.get("click", np.full(len(texts), np.nan))[a:b]
            key = rel if self.score == "relevance" else click
            order = np.argsort(-key, kind="stable")
            head = []
            for o in order:
                it = dict(job.ranked.items[o])
                extra = {"cross_relevance": float(rel[o]), "cross_click": float(1.0 / (1.0 + np.exp(-click[o])))}
                it["scores"] = {**it.get("scores", {}), **{k: v for k, v in extra.items() if np.isfinite(v)}}
                head.append(it)
            items = head + [dict(it) for it in job.ranked.items[b - a :]]
            items = items[: job.k] if job.k > 0 else items
            for r, it in enumerate(items):
                it["rank"] = r + 1
            out.append(replace(job.ranked, items=items, rerank_ms=elapsed))
        return out


def widen(jobs: list[RankJob], top_n: int) -> list[RankJob]:
    """The rank jobs asking for at least ``top_n`` items (the rerank keeps each job's own ``k``)."""
    return [replace(j, k=max(j.k, top_n)) if 0 < j.k < top_n else j for j in jobs]


def rerank_jobs(jobs: list[RankJob], ranked: list[RankedList], top_n: int) -> list[RerankJob]:
    """The rerank stage's input: each rank job's (widened) list, the query text the cross-encoder reads
    and the job's own ``k``."""
    return [RerankJob(query=j.query, ranked=r, top_n=top_n, k=j.k) for j, r in zip(jobs, ranked, strict=True)]


def rank_then_rerank(
    rank: Callable[[list[RankJob]], list[RankedList]], rerank: Reranker, top_n: int
) -> Callable[[list[RankJob]], list[RankedList]]:
    """An in-process rank stage that reranks the ranker's lists (``SearchPipeline``)."""

    def stage(jobs: list[RankJob]) -> list[RankedList]:
        return rerank(rerank_jobs(jobs, rank(widen(jobs, top_n)), top_n))

    return stage


def rerank_stage(
    rank: Callable[[list[RankJob]], list[RankedList]], config: ServingConfig, device: str = "cpu"
) -> Callable[[list[RankJob]], list[RankedList]]:
    """``SearchPipeline``'s rank stage: ``rank`` itself, or with ``rerank_top_n`` > 0 rank then rerank."""
    if config.rerank_top_n <= 0 or not config.cross_encoder_dir:
        return rank
    return rank_then_rerank(rank, Reranker.load(config.cross_encoder_dir, config.rerank_score, device),
                            config.rerank_top_n)  # fmt: skip
