"""MultiTaskRanker: the rank stage, every head over the candidates of many requests in one forward pass.

The scoring backend is pluggable (``backend="inprocess"`` runs the model here, on the GPU when
the replica has one: ``ranker_num_gpus`` in the app args, by default half a GPU when the
cluster has one).

With an online store (``store_url``) and click blend weights (the checkpoint manifest's
``click_blend``, else ``serving.click_blend_weights``) each ranked batch is re-ranked by the learned
click blend, one store round trip per batch (:mod:`shoprank.serving.clicks`); a failing or slow
store leaves that batch to the model alone, flagged ``degraded``.
"""

from __future__ import annotations

from ray import serve

from shoprank.model.checkpoint import read_manifest
from shoprank.retrieval.artefact import load_artefact
from shoprank.serve_app.common import BatchedStage, replica_model
from shoprank.serving.clicks import served_clicks
from shoprank.serving.config import ServingConfig
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
        serving: dict | None = None,
        store_url: str | None = None,
        store: dict | None = None,
    ) -> None:
        super().__init__()
        model, version = replica_model(checkpoint, encoder, device, torch_threads)
        self.device = str(model.device)
        manifest = read_manifest(checkpoint) if checkpoint else None
        cfg = ServingConfig.model_validate(serving or {})
        clicks = served_clicks(store_url, manifest, cfg, store, checkpoint)
        self.ranker = Ranker(model, version, backend, clicks=clicks, **(backend_options or {}))
        self.ranker.add_artefact(load_artefact(index_dir))

    def process(self, jobs: list[RankJob]) -> list[RankedList]:
        return self.ranker(jobs)

    def info(self) -> dict[str, object]:
        return {
            "model_version": self.ranker.model_version,
            "index_version": self.ranker.current_version,
            "device": self.device,
            "backend": self.ranker.backend.name,
            "click_blend": self.ranker.clicks is not None,
        }
