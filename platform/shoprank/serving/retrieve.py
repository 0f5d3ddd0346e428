"""The retrieve stage's component: filtered top-N candidates from an index artefact, vector or hybrid.

:class:`Retriever` is what ``CandidateRetriever`` / ``RetrieverShard`` (``shoprank.serve_app.retriever``)
wrap and what :class:`~shoprank.serving.pipeline.SearchPipeline` calls in process (``pipeline`` re-exports
it). Hybrid retrieval (docs/retrieval.md, "Hybrid retrieval"): the ANN top-N and the BM25 top
``lexical_candidates`` under the same filter, fused by reciprocal-rank fusion.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from shoprank.retrieval.artefact import IndexArtefact
from shoprank.retrieval.index import FilterSpec, VectorIndex
from shoprank.retrieval.lexical import rrf_fuse
from shoprank.serving.config import ServingConfig
from shoprank.serving.stages import Retrieved, RetrieveJob

log = logging.getLogger("shoprank.serving")


class Retriever:
    """Filtered top-N candidates from one index artefact, or one shard of a sharded one (exact, HNSW or
    compressed IVF-PQ, see VectorIndex); positions are always the whole artefact's rows.

    With ``retrieval: hybrid`` (and an artefact holding a lexical index) the ANN top-N and the BM25 top
    ``lexical_candidates`` (the same filter mask applied) are fused by reciprocal-rank fusion
    (:func:`~shoprank.retrieval.lexical.rrf_fuse`, ``rrf_k``) into the top-N; an artefact without a lexical
    index falls back to vector retrieval with a warning."""

    def __init__(self, artefact: IndexArtefact, cfg: ServingConfig) -> None:
        self.artefact = artefact
        self.lexical = artefact.lexical if cfg.retrieval == "hybrid" else None
        if cfg.retrieval == "hybrid" and artefact.lexical is None:
            log.warning(
                "index %s (version %s) has no lexical index: retrieval falls back to vector only "
                "(rebuild it with `shoprank index build` for hybrid)",
                artefact.path,
                artefact.index_version,
            )
        self.lexical_candidates, self.rrf_k = cfg.lexical_candidates, cfg.rrf_k
        self.index_version = artefact.index_version
        self.index_dir = str(artefact.path)
        self.offset = artefact.offset  # a shard's first row in the artefact
        if artefact.compressed is not None:
            artefact.compressed.tune(cfg.ivfpq_nprobe, cfg.ivfpq_rerank_factor)
        self.index = VectorIndex(
            np.asarray(artefact.embeddings),  # memory-mapped rows stay mapped (a view, not a copy)
            artefact.items,
            artefact.hnsw,
            hnsw_threshold=cfg.hnsw_threshold,
            ef_search=cfg.ef_search,
            compressed=artefact.compressed,
        )

    @property
    def mode(self) -> str:
        """``hybrid`` when the lexical side is on, else ``vector``."""
        return "hybrid" if self.lexical is not None else "vector"

    def search_parts(
        self, q_emb: np.ndarray, filters: list[FilterSpec | None], n: int, texts: list[str] | None = None
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per query the ranked lists to fuse, each (artefact row positions, scores) best first: the ANN top-``n``,
        then (hybrid, with ``texts``) the BM25 top ``lexical_candidates`` under the same filter."""
        found = self.index.search(q_emb, n, filters)
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[(pos + self.offset, sc)] for pos, sc in found]
        if self.lexical is not None and texts is not None:
            masks = [self.index.mask(f) for f in filters]
            for p, (pos, sc) in zip(parts, self.lexical.search(texts, self.lexical_candidates, masks), strict=True):
                p.append((pos + self.offset, sc))
        return parts

    def search(
        self, q_emb: np.ndarray, filters: list[FilterSpec | None], n: int, texts: list[str] | None = None
    ) -> list[tuple[np.ndarray, ...]]:
        """(artefact row positions, scores) per query, best first: cosines, or (hybrid, with ``texts``) RRF scores."""
        parts = self.search_parts(q_emb, filters, n, texts)
        return [p[0] if len(p) == 1 else rrf_fuse([pos for pos, _ in p], n, self.rrf_k) for p in parts]

    def retrieve(
        self, q_emb: np.ndarray, filters: list[FilterSpec | None], n: int, texts: list[str] | None = None
    ) -> list[np.ndarray]:
        """Candidate row positions per query, best first."""
        return [pos for pos, _ in self.search(q_emb, filters, n, texts)]

    def __call__(self, jobs: list[RetrieveJob]) -> list[Retrieved]:
        """The retrieve stage: one index search for all ``jobs`` (fused with BM25 when hybrid)."""
        t0 = time.perf_counter()
        n = max(j.n for j in jobs)
        q = np.stack([j.embedding for j in jobs]).astype(np.float32)
        found = self.retrieve(q, [j.filters for j in jobs], n, [j.query for j in jobs])
        ms = (time.perf_counter() - t0) * 1e3
        version, where = self.index_version, self.index_dir
        return [Retrieved(pos[: j.n], version, where, ms) for pos, j in zip(found, jobs, strict=True)]
