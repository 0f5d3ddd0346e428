"""MultiTaskRanker: the rank stage, every head over the candidates of many requests in one forward pass.

The scoring backend is pluggable (``backend="inprocess"`` runs the model here, on the GPU when
the replica has one: ``ranker_num_gpus`` in the app args, by default half a GPU when the
cluster has one).
"""

from __future__ import annotations

from ray import serve

from shoprank.retrieval.artefact import load_artefact
from shoprank.serve_app.common import BatchedStage, replica_model
from shoprank.serving.pipeline import Ranker
from shoprank.serving.stages import RankedList, RankJob


@serve.deployment(
    name="MultiTaskRanker",
    ray_actor_options={"num_cpus": 0.5, "num_gpus": 0},
    max_ongoing_requests=64,
    max_surge_percent=100,
)
class MultiTaskRanker(BatchedStage[RankJob, RankedList]):
    def __init__(
        self,
        index_dir: str,
        checkpoint: str | None = None,
        encoder: str = "minilm",
        backend: str = "inprocess",
        backend_options: dict | None = None,
        torch_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__()
        model, version = replica_model(checkpoint, encoder, device, torch_threads)
        self.device = str(model.device)
        self.ranker = Ranker(model, version, backend, **(backend_options or {}))
        self.ranker.add_artefact(load_artefact(index_dir))

    def process(self, jobs: list[RankJob]) -> list[RankedList]:
        return self.ranker(jobs)

    def info(self) -> dict[str, object]:
        return {
            "model_version": self.ranker.model_version,
            "index_version": self.ranker.current_version,
            "device": self.device,
            "backend": self.ranker.backend.name,
        }
