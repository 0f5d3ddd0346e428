"""QueryIntent: encodes the query once (batched across concurrent requests) and detects intent.

The encoder runs on the GPU when the replica has one (``intent_num_gpus`` in the app args).
"""

from __future__ import annotations

import time

import numpy as np
from ray import serve

from shoprank.retrieval.artefact import read_index_manifest
from shoprank.serve_app.common import BatchStats, items_in, per_call, replica_model, set_batching
from shoprank.serving.pipeline import IntentResult, QueryEncoder


@serve.deployment(
    name="QueryIntent", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64, max_surge_percent=100
)
class QueryIntent:
    def __init__(
        self,
        index_dir: str,
        checkpoint: str | None = None,
        encoder: str = "minilm",
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
        torch_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        model, version = replica_model(checkpoint, encoder, device, torch_threads)
        self.device = str(model.device)
        categories = read_index_manifest(index_dir).get("categories", [])
        self.encoder = QueryEncoder(model, version, categories)
        self.encoder([" warm up "])
        self.stats = BatchStats()
        set_batching(self.encode_batch, max_batch_size, batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=items_in)
    async def encode_batch(self, calls: list[list[str]]) -> list[list[tuple[np.ndarray, IntentResult, float]]]:
        def encode(texts: list[str]) -> list[tuple[np.ndarray, IntentResult, float]]:
            t0 = time.perf_counter()
            emb, intents = self.encoder(texts)
            ms = (time.perf_counter() - t0) * 1e3
            self.stats.record(len(texts))
            return [(emb[i], intents[i], ms) for i in range(len(texts))]

        return per_call(calls, encode)

    async def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, IntentResult, float]]:
        """Per query: (embedding [d], intent, encode ms); batch sizes are in ``batch_stats``."""
        return await self.encode_batch(texts)

    def batch_stats(self) -> dict[str, object]:
        return {**self.stats.summary(), "device": self.device}
