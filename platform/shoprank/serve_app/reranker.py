"""The cross-encoder phase under Serve (issue 23): ``CrossEncoderReranker`` and the ``RankThenRerank`` router.

``build_app`` deploys them only when ``serving.rerank_top_n`` > 0. The ingress's rank stage is then the
router: it asks ``MultiTaskRanker`` for each job's list (at least ``rerank_top_n`` items deep), hands the
lists to ``CrossEncoderReranker`` (batched like the ranker: ``@serve.batch`` merges concurrent calls, one
cross-encoder pass per batch; on the GPU when the replica has one, or on Triton with
``serving.rerank_backend: triton``) and returns the reordered lists cut
to each request's ``k``. The work itself is :class:`shoprank.serving.rerank.Reranker`, as in process.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from shoprank.serve_app.common import BatchedStage, set_torch_threads
from shoprank.serving.config import ServingConfig
from shoprank.serving.rerank import load_reranker, rerank_jobs, widen
from shoprank.serving.stages import RankedList, RankJob, RerankJob


@serve.deployment(
    name="CrossEncoderReranker",
    ray_actor_options={"num_cpus": 0.5, "num_gpus": 0},
    max_ongoing_requests=64,
)
class CrossEncoderReranker(BatchedStage[RerankJob, RankedList]):
    def __init__(self, serving: dict, torch_threads: int | None = None, device: str | None = None) -> None:
        super().__init__()
        import torch

        set_torch_threads(torch_threads)
        cfg = ServingConfig.model_validate(serving)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.reranker = load_reranker(cfg, device)  # serving.rerank_backend: in process, or Triton

    def process(self, jobs: list[RerankJob]) -> list[RankedList]:
        return self.reranker(jobs)

    def info(self) -> dict[str, object]:
        return {"cross_encoder_version": self.reranker.version, "device": str(self.reranker.model.device),
                "backend": self.reranker.backend}  # fmt: skip


@serve.deployment(name="RankThenRerank", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
class RankThenRerank:
    """The rank stage the ingress calls when the cross-encoder phase is on: rank, then rerank."""

    def __init__(self, ranker: DeploymentHandle, reranker: DeploymentHandle, top_n: int) -> None:
        self.ranker, self.reranker, self.top_n = ranker, reranker, top_n

    async def __call__(self, jobs: list[RankJob]) -> list[RankedList]:
        ranked = await self.ranker.remote(widen(jobs, self.top_n))
        return await self.reranker.remote(rerank_jobs(jobs, ranked, self.top_n))

    async def ready(self) -> bool:
        """Ready once both the ranker and the reranker are."""
        return bool(await self.ranker.ready.remote()) and bool(await self.reranker.ready.remote())
