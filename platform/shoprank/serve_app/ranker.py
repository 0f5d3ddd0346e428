"""MultiTaskRanker: every head over the candidates of many requests in one batched forward pass.

``@serve.batch`` gathers concurrent requests; the scoring backend is pluggable
(``backend="inprocess"`` runs the model here, on the GPU when the replica has one:
``ranker_num_gpus`` in the app args, by default half a GPU when the cluster has one).
"""

from __future__ import annotations

from ray import serve

from shoprank.retrieval.artefact import load_artefact
from shoprank.serve_app.common import BatchStats, items_in, per_call, replica_model, set_batching
from shoprank.serving.pipeline import RankedList, Ranker, RankJob


@serve.deployment(
    name="MultiTaskRanker",
    ray_actor_options={"num_cpus": 0.5, "num_gpus": 0},
    max_ongoing_requests=64,
    max_surge_percent=100,
)
class MultiTaskRanker:
    def __init__(
        self,
        index_dir: str,
        checkpoint: str | None = None,
        encoder: str = "minilm",
        backend: str = "inprocess",
        backend_options: dict | None = None,
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
        torch_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        model, version = replica_model(checkpoint, encoder, device, torch_threads)
        self.device = str(model.device)
        self.ranker = Ranker(model, version, backend, **(backend_options or {}))
        self.ranker.add_artefact(load_artefact(index_dir))
        self.stats = BatchStats()
        set_batching(self.rank, max_batch_size, batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=items_in)
    async def rank(self, calls: list[list[RankJob]]) -> list[list[RankedList]]:
        def rank(jobs: list[RankJob]) -> list[RankedList]:
            self.stats.record(len(jobs))
            return self.ranker.rank_batch(jobs)

        return per_call(calls, rank)

    async def __call__(self, jobs: list[RankJob]) -> list[RankedList]:
        return await self.rank(jobs)

    def info(self) -> dict[str, object]:
        return {
            "model_version": self.ranker.model_version,
            "index_version": self.ranker.current_version,
            "device": self.device,
            "backend": self.ranker.backend.name,
        }

    def batch_stats(self) -> dict[str, object]:
        return self.stats.summary()
