"""CandidateRetriever: filtered top-N candidates from the ANN index (exact or HNSW), batched."""

from __future__ import annotations

import time

import numpy as np
from ray import serve

from shoprank.retrieval.artefact import load_artefact
from shoprank.retrieval.index import FilterSpec
from shoprank.serve_app.common import BatchStats, items_in, per_call, set_batching
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import Retriever

RetrieveJob = tuple[np.ndarray, FilterSpec | None, int]
Retrieved = tuple[np.ndarray, str, str, float]


@serve.deployment(
    name="CandidateRetriever", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, max_surge_percent=100
)
class CandidateRetriever:
    def __init__(
        self,
        index_dir: str,
        config: dict | None = None,
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
    ) -> None:
        self.cfg = ServingConfig.model_validate(config or {})
        self.retriever = Retriever(load_artefact(index_dir), self.cfg)
        self.stats = BatchStats()
        set_batching(self.retrieve_batch, max_batch_size, batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=items_in)
    async def retrieve_batch(self, calls: list[list[RetrieveJob]]) -> list[list[Retrieved]]:
        def retrieve(jobs: list[RetrieveJob]) -> list[Retrieved]:
            t0 = time.perf_counter()
            n = max(j[2] for j in jobs)
            q = np.stack([j[0] for j in jobs]).astype(np.float32)
            found = self.retriever.retrieve(q, [j[1] for j in jobs], n)
            ms = (time.perf_counter() - t0) * 1e3
            self.stats.record(len(jobs))
            r = self.retriever
            return [(pos[: j[2]], r.index_version, r.index_dir, ms) for pos, j in zip(found, jobs, strict=True)]

        return per_call(calls, retrieve)

    async def __call__(self, jobs: list[RetrieveJob]) -> list[Retrieved]:
        """Per (query embedding, filters, n): (candidate positions best first, index_version,
        index_dir, retrieve ms)."""
        return await self.retrieve_batch(jobs)

    def version(self) -> tuple[str, str]:
        return self.retriever.index_version, self.retriever.index_dir

    def batch_stats(self) -> dict[str, object]:
        return self.stats.summary()
