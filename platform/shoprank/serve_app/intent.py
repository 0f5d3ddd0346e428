"""QueryIntent: the encode stage (query embedding + intent), batched across concurrent requests.

The encoder runs on the GPU when the replica has one (``intent_num_gpus`` in the app args), on the
runtime ``serving.encoder_runtime`` names (torch | onnx | onnx-int8; :mod:`shoprank.model.runtime`).
"""

from __future__ import annotations

from ray import serve

from shoprank.retrieval.artefact import read_index_manifest
from shoprank.serve_app.common import BatchedStage, set_torch_threads
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import QueryEncoder, load_serving_model
from shoprank.serving.stages import EncodedQuery


@serve.deployment(
    name="QueryIntent", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64, max_surge_percent=100
)
class QueryIntent(BatchedStage[str, EncodedQuery]):
    def __init__(
        self,
        index_dir: str,
        checkpoint: str | None = None,
        encoder: str = "minilm",
        torch_threads: int | None = None,
        device: str | None = None,
        serving: dict | None = None,
    ) -> None:
        super().__init__()
        runtime = ServingConfig.model_validate(serving or {}).encoder_runtime
        set_torch_threads(torch_threads)  # before the model loads: the ONNX session takes torch's thread count
        model, _manifest, version = load_serving_model(checkpoint, encoder, device, runtime)
        self.device = str(model.device)
        self.encoder_runtime = model.encoder_runtime  # the requested one, or the gate's fallback
        categories = read_index_manifest(index_dir).get("categories", [])
        self.encoder = QueryEncoder(model, version, categories)
        self.encoder([" warm up "])

    def process(self, texts: list[str]) -> list[EncodedQuery]:
        return self.encoder(texts)

    def batch_stats(self) -> dict[str, object]:
        return {**self.stats.summary(), "device": self.device, "encoder_runtime": self.encoder_runtime}
