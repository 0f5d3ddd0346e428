"""CandidateRetriever: the retrieve stage, filtered top-N from the ANN index (exact or HNSW), batched."""

from __future__ import annotations

from ray import serve

from shoprank.retrieval.artefact import load_artefact
from shoprank.serve_app.common import BatchedStage
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import Retriever
from shoprank.serving.stages import Retrieved, RetrieveJob


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
