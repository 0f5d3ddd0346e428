"""The retrieve stage: filtered top-N from the ANN index (exact, HNSW or compressed IVF-PQ), batched.

- :class:`CandidateRetriever`: one deployment holding the whole index (an unsharded artefact).
- A sharded artefact (:mod:`shoprank.retrieval.shards`) runs one :class:`RetrieverShard` deployment
  (its own replica group) per shard and a small :class:`ShardedRetriever` router, deployed under
  the name ``CandidateRetriever`` with the same call interface, so the flow and the ingress do not
  know which they have. The router fans each batch out to every shard (filters applied per shard)
  and merges the top-N by exact score: the same candidates as the unsharded index.

Hybrid retrieval (``retrieval: hybrid``, an artefact with a lexical index): each shard returns its ANN
top-N and its BM25 top ``lexical_candidates`` (the same filter); the router merges each side across
shards by score (the shards' BM25 slices share the global IDF, so the merged lexical list is the
unsharded one) and only then fuses the two by reciprocal-rank fusion: the same candidates as the
unsharded hybrid retriever.

Rollouts of a sharded index: the router names the ``index_version`` (and directory) it serves in
every shard call; a shard replica keeps the versions it has loaded (the serving one and the one
rolling in or out) and loads a named version beside the others on first use. So an old router
keeps getting old-version answers from new shard replicas and a new router new-version answers
from old ones: no response mixes versions and none is dropped while Serve swaps the replicas. A
new router's (async) constructor asks every shard to load its version before it takes traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import numpy as np
from ray import serve

from shoprank.retrieval.artefact import load_artefact, read_index_manifest
from shoprank.retrieval.shards import merge_fused
from shoprank.serve_app.common import BatchedStage
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import Retriever
from shoprank.serving.stages import Retrieved, RetrieveJob

KEEP_VERSIONS = 2  # the serving version and the one rolling in or out


@serve.deployment(
    name="CandidateRetriever", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, max_surge_percent=100
)
class CandidateRetriever(BatchedStage[RetrieveJob, Retrieved]):
    def __init__(self, index_dir: str, config: dict | None = None) -> None:
        super().__init__()
        self.cfg = ServingConfig.model_validate(config or {})
        self.retriever = Retriever(load_artefact(index_dir), self.cfg)

    def process(self, jobs: list[RetrieveJob]) -> list[Retrieved]:
        return self.retriever(jobs)

    def version(self) -> tuple[str, str]:
        return self.retriever.index_version, self.retriever.index_dir


@serve.deployment(
    name="RetrieverShard", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, max_surge_percent=100
)
class RetrieverShard:
    """One shard of a sharded index, in as many versions as are rolling (see the module docstring)."""

    def __init__(self, index_dir: str, shard: int, config: dict | None = None) -> None:
        self.cfg = ServingConfig.model_validate(config or {})
        self.shard = shard
        self.versions: OrderedDict[str, Retriever] = OrderedDict()
        self.load(index_dir)

    def load(self, index_dir: str) -> str:
        """Load this shard of ``index_dir`` beside the versions held (the oldest beyond two goes); its version."""
        r = Retriever(load_artefact(index_dir, shard=self.shard), self.cfg)
        self.versions[r.index_version] = r
        self.versions.move_to_end(r.index_version)
        while len(self.versions) > KEEP_VERSIONS:
            self.versions.popitem(last=False)
        return r.index_version

    def _retriever(self, index_dir: str, index_version: str) -> Retriever:
        r = self.versions.get(index_version)
        if r is None:
            if self.load(index_dir) != index_version:
                raise RuntimeError(f"{index_dir} no longer holds index version {index_version}")
            r = self.versions[index_version]
        return r

    def search(
        self, index_dir: str, index_version: str, jobs: list[RetrieveJob]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(artefact row positions, scores) per job in version ``index_version``, best first (fused when hybrid)."""
        r = self._retriever(index_dir, index_version)
        n = max(j.n for j in jobs)
        q = np.stack([j.embedding for j in jobs]).astype(np.float32)
        return r.search(q, [j.filters for j in jobs], n, [j.query for j in jobs])

    def search_parts(
        self, index_dir: str, index_version: str, jobs: list[RetrieveJob]
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per job this shard's ranked lists to merge and fuse: ANN (positions, cosines), then when hybrid BM25
        (positions, scores); positions are the artefact's rows."""
        r = self._retriever(index_dir, index_version)
        n = max(j.n for j in jobs)
        q = np.stack([j.embedding for j in jobs]).astype(np.float32)
        return r.search_parts(q, [j.filters for j in jobs], n, [j.query for j in jobs])

    def loaded(self) -> list[str]:
        return list(self.versions)

    async def ready(self) -> bool:
        return True


@serve.deployment(
    name="CandidateRetriever", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64, max_surge_percent=100
)
class ShardedRetriever:
    """The retrieve stage over a sharded index: fan out to every shard, merge the top-N (same interface as
    :class:`CandidateRetriever`; the ingress coalesces calls, so each call is already a batch)."""

    async def __init__(self, index_dir: str, shards: list[Any], config: dict | None = None) -> None:  # type: ignore[misc]
        """Ready (Serve routes to it) only once every shard deployment has this version loaded."""
        self.cfg = ServingConfig.model_validate(config or {})
        self.index_dir = index_dir
        self.index_version = str(read_index_manifest(index_dir)["index_version"])
        self.shards = shards
        loaded = await asyncio.gather(*(h.load.remote(index_dir) for h in shards))
        if set(loaded) != {self.index_version}:
            raise RuntimeError(f"{index_dir}: shards loaded {sorted(set(loaded))}, not {self.index_version}")

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Batch settings apply in the shards' callers (the ingress coalesces); nothing to change here."""

    async def __call__(self, jobs: list[RetrieveJob]) -> list[Retrieved]:
        t0 = time.perf_counter()
        parts = await asyncio.gather(
            *(h.search_parts.remote(self.index_dir, self.index_version, jobs) for h in self.shards)
        )
        out = []
        ms = (time.perf_counter() - t0) * 1e3
        for b, job in enumerate(jobs):
            pos, _ = merge_fused([p[b] for p in parts], job.n, self.cfg.lexical_candidates, self.cfg.rrf_k)
            out.append(Retrieved(pos, self.index_version, self.index_dir, ms))
        return out

    def version(self) -> tuple[str, str]:
        return self.index_version, self.index_dir

    async def ready(self) -> bool:
        return True
