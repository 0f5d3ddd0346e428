"""The cross-encoder phase of a search (issue 23): the rank stage's top N re-scored by a cross-encoder.

``serving.rerank_top_n`` > 0 with ``serving.cross_encoder_dir`` turns it on. The rank stage then runs
as *rank, then rerank*: :func:`rank_then_rerank` in process (``SearchPipeline``), the
``RankThenRerank`` router in front of the ``CrossEncoderReranker`` deployment under Serve
(:mod:`shoprank.serve_app.reranker`); both hand each ranked list to :class:`Reranker` as a
:class:`~shoprank.serving.stages.RerankJob`, so what is served is one implementation.

:class:`Reranker` scores the top N items of every list of a batch in one batched cross-encoder
pass (query + the item's text by the cross-encoder's own ``pair`` recipe, the one training used: see
:class:`IndexTexts`), in process or by Triton (``serving.rerank_backend``), orders them by ``serving.rerank_score``
(the cross-encoder's relevance, 0..1, or click probability), and leaves the tail as the first phase
ranked it. Every reranked item gains ``cross_relevance``/``cross_click`` in its ``scores``; its
``score`` stays the first phase's, its ``rank`` is its new place. Measured in
bench/results/cross_encoder.md (quality) and docs/cross_encoder.md (latency).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.model.cross_encoder import (
    LEGACY_SERVED_PAIR,
    CrossEncoder,
    RawFn,
    cross_version,
    load_cross_encoder,
    pair_recipe,
)
from shoprank.model.text import PAIR, TextRecipe, recipes_of
from shoprank.retrieval.artefact import ITEMS, TEXT_COLUMN, read_index_manifest
from shoprank.serving.config import ServingConfig
from shoprank.serving.stages import RankedList, RankJob, RerankJob

log = logging.getLogger("shoprank.serving")
SERVED_PARTS = frozenset({"title", "category_path"})  # the text parts a ranked item carries itself


def served_pair_text(item: Mapping[str, Any], recipe: TextRecipe, stored: str | None = None) -> str:
    """The text the cross-encoder reads for a ranked item: ``stored`` (the index's text of that item, rendered
    by this very recipe) when given, else ``recipe`` over the fields the item carries (a ranked item has
    title and category path; description/attributes only where the caller added them)."""
    if stored is not None:
        return stored
    return recipe.render(item.get("title"), item.get("category_path"), item.get("description"), item.get("attributes"))


class IndexTexts:
    """Item id -> the ``pair`` text an index artefact stored (its items' ``text``), per index directory, used
    when the cross-encoder's recipe reads parts a ranked item lacks (the description) and the index rendered
    its texts by the same recipe. Otherwise (another recipe, or an index without stored texts) the texts are
    rendered from the item's own fields, with one warning per index."""

    def __init__(self, recipe: TextRecipe, keep: int = 2) -> None:
        self.recipe, self.keep = recipe, keep
        self.needed = not set(recipe.parts) <= SERVED_PARTS
        self._by_dir: OrderedDict[str, dict[str, str] | None] = OrderedDict()

    def _load(self, index_dir: str) -> dict[str, str] | None:
        manifest = read_index_manifest(index_dir)
        path = Path(index_dir) / ITEMS
        if recipes_of(manifest)[PAIR] != self.recipe or TEXT_COLUMN not in pl.read_parquet_schema(path):
            log.warning("index %s stores no item texts by the cross-encoder's recipe %s: the reranker reads "
                        "title and category path only", index_dir, self.recipe.to_dict())  # fmt: skip
            return None
        items = pl.read_parquet(path, columns=["item_id", TEXT_COLUMN])
        return dict(zip(items["item_id"].cast(pl.Utf8).to_list(), items[TEXT_COLUMN].to_list(), strict=True))

    def get(self, index_dir: str) -> dict[str, str] | None:
        """The stored texts of ``index_dir`` (None: not needed, unknown directory, or not the recipe's)."""
        if not self.needed or not index_dir:
            return None
        if index_dir not in self._by_dir:
            self._by_dir[index_dir] = self._load(index_dir)
            while len(self._by_dir) > self.keep:
                self._by_dir.popitem(last=False)
        self._by_dir.move_to_end(index_dir)
        return self._by_dir[index_dir]


class Reranker:
    """The rerank stage: a batch of :class:`RerankJob` -> one reordered :class:`RankedList` each.

    ``recipe`` is the cross-encoder's ``pair`` text recipe (its manifest's, :func:`pair_recipe`), so the
    served texts are its training texts; ``raw`` scores token batches elsewhere (the Triton backend) instead
    of in process."""

    def __init__(
        self,
        model: CrossEncoder,
        version: str = "",
        score: str = "relevance",
        batch_size: int = 64,
        recipe: TextRecipe = LEGACY_SERVED_PAIR,
        raw: RawFn | None = None,
        backend: str = "inprocess",
        client: Any = None,
    ) -> None:
        if score not in model.config.tasks:
            raise ValueError(f"rerank_score {score!r}: the cross-encoder has heads {model.config.tasks}")
        self.model, self.version, self.score, self.batch_size = model, version, score, batch_size
        self.recipe, self.raw, self.backend = recipe, raw, backend
        self.client = client  # the Triton client behind ``raw`` (its ``stats`` count failovers), or None
        self.index_texts = IndexTexts(recipe)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        score: str = "relevance",
        device: str = "cpu",
        backend: str = "inprocess",
        backend_options: Mapping[str, Any] | None = None,
    ) -> Reranker:
        """The cross-encoder saved in ``directory``, scored in process or by Triton (``backend``;
        ``backend_options``: :class:`~shoprank.triton.client.TritonCrossClient` keyword arguments, ``url``
        required; ``expected_version`` defaults to this model's version, ``failover`` to ``unavailable``)."""
        model, manifest = load_cross_encoder(directory, device)
        version = cross_version(manifest)
        raw, client = None, None
        if backend == "triton":
            from shoprank.triton.client import TritonCrossClient  # imports tritonclient only when chosen

            opts = dict(backend_options or {})
            opts.setdefault("expected_version", version)
            failover = opts.setdefault("failover", "unavailable")
            client = TritonCrossClient(fallback_model=model if failover == "inprocess" else None, **opts)
            raw = client.raw_outputs
        elif backend != "inprocess":
            raise ValueError(f"unknown rerank backend {backend!r}; available: ['inprocess', 'triton']")
        return cls(model, version, score, recipe=pair_recipe(manifest), raw=raw, backend=backend, client=client)

    def texts(self, job: RerankJob, n: int) -> list[str]:
        """The pair texts of the job's top ``n`` items, as training rendered them (see :class:`IndexTexts`)."""
        stored = self.index_texts.get(job.index_dir) or {}
        head = job.ranked.items[:n]
        return [served_pair_text(it, self.recipe, stored.get(str(it.get("item_id")))) for it in head]

    def __call__(self, jobs: list[RerankJob]) -> list[RankedList]:
        t0 = time.perf_counter()
        queries, texts, spans = [], [], []
        for job in jobs:
            n = 0 if job.ranked.error else min(job.top_n, len(job.ranked.items))
            queries += [job.query] * n
            texts += self.texts(job, n)
            spans.append((len(texts) - n, len(texts)))
        scored = self.model.score(queries, texts, self.batch_size, self.raw) if texts else {}
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
    return [RerankJob(query=j.query, ranked=r, top_n=top_n, k=j.k, index_dir=j.index_dir)
            for j, r in zip(jobs, ranked, strict=True)]  # fmt: skip


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
    return rank_then_rerank(rank, load_reranker(config, device), config.rerank_top_n)


def load_reranker(config: ServingConfig, device: str = "cpu") -> Reranker:
    """The configured reranker (``cross_encoder_dir``, ``rerank_score``, ``rerank_backend`` and its options):
    what ``SearchPipeline`` and the ``CrossEncoderReranker`` deployment both serve."""
    if not config.cross_encoder_dir:
        raise ValueError("the cross-encoder phase needs serving.cross_encoder_dir")
    return Reranker.load(config.cross_encoder_dir, config.rerank_score, device, config.rerank_backend,
                         config.rerank_backend_options)  # fmt: skip
