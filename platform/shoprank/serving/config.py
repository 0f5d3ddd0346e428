"""Serving configuration (typed): limits, blend defaults, batching and retrieval knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shoprank.clicks.features import CANDIDATES, BlendWeights

# Scores the ranker returns for every candidate, each in 0..1; blend weights may name any of them.
BLENDABLE_SCORES: tuple[str, ...] = ("relevance", "click", "season_fit", "similarity", "popularity")
FILTER_NAMES: tuple[str, ...] = ("category", "price_min", "price_max", "in_stock")


class BatchSettings(BaseModel):
    """A batched deployment's ``user_config``: how ``@serve.batch`` gathers concurrent calls.
    Serve applies a change to the live replicas (``reconfigure``), without starting new ones."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024)  # items (queries), not calls
    batch_wait_timeout_s: float = Field(0.0, ge=0.0, le=1.0)  # 0: batch whatever queued meanwhile


class ServingConfig(BaseModel):
    """Everything the pipeline and the deployments need besides the model and the index."""

    model_config = ConfigDict(extra="forbid")

    max_query_chars: int = Field(256, ge=1, le=10_000)
    max_k: int = Field(100, ge=1, le=10_000)
    max_rank_items: int = Field(1000, ge=1, le=100_000)
    max_id_chars: int = Field(256, ge=1, le=4096)  # a Rank item id, a user id
    num_candidates: int = Field(200, ge=1, le=10_000)  # top-N handed from retrieval to the ranker
    blend_weights: dict[str, float] = Field(default_factory=lambda: {"relevance": 0.6, "click": 0.3, "season_fit": 0.1})
    max_blend_weight: float = Field(10.0, gt=0)
    hnsw_threshold: int = Field(50_000, ge=1)
    ef_search: int = Field(256, ge=1)
    # -- retrieval (compressed/sharded index): IVF-PQ search settings; 0 keeps the artefact's (docs/retrieval.md)
    ivfpq_nprobe: int = Field(0, ge=0, le=65536)  # coarse lists scanned per query
    ivfpq_rerank_factor: int = Field(0, ge=0, le=1000)  # shortlist = rerank_factor x n, re-scored exactly
    # -- end retrieval
    # -- hybrid retrieval (issue 23; shoprank.retrieval.lexical, docs/retrieval.md "Hybrid retrieval"): "hybrid"
    # fuses the ANN top-N with the BM25 top lexical_candidates by reciprocal-rank fusion (rrf_k); an artefact
    # without a lexical index serves "vector" (a warning).
    retrieval: Literal["vector", "hybrid"] = "hybrid"
    lexical_candidates: int = Field(100, ge=1, le=10_000)
    rrf_k: int = Field(60, ge=1, le=100_000)
    # -- end hybrid retrieval
    ranker_backend: str = "inprocess"
    max_batch_size: int = Field(16, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.0, ge=0.0, le=1.0)
    ingress_batches_in_flight: int = Field(2, ge=1, le=64)  # coalesced batches the ingress runs at once
    request_timeout_s: float = Field(10.0, gt=0)  # server-side budget for one request
    # Admission at the ingress (shoprank.serve_app.admission): the queueing delay a request may be admitted
    # into (0: off, Serve's max_ongoing_requests alone), the in-flight count always admitted, the hard cap.
    admission_target_wait_s: float = Field(0.5, ge=0)
    admission_min_in_flight: int = Field(32, ge=1)  # two coalesced batches of 16: never shed below
    admission_max_in_flight: int = Field(512, ge=1)
    # The learned click blend (shoprank.clicks; BlendWeights.to_dict() format), used when the app has
    # an online store and the checkpoint's manifest holds no ``click_blend`` (the checkpoint's wins).
    click_blend_weights: dict[str, dict[str, float]] | None = None
    store_timeout_s: float = Field(0.05, gt=0)  # a ranked batch's store read budget; slower -> model alone
    # Where the served-results log goes (shoprank.feedback.served_log: every answered Search/Rank and
    # acknowledged Feedback event as parquet); None: off. Relative paths resolve where the config is validated.
    served_log_dir: str | None = None
    # -- encoder runtime (issue 18; shoprank.model.runtime): what the query encoder runs on. ONNX variants
    # are exported next to the checkpoint when missing; one the parity gate refused falls back (a warning).
    encoder_runtime: Literal["torch", "onnx", "onnx-int8"] = "torch"
    # -- cross-encoder phase (issue 23; shoprank.serving.rerank, docs/cross_encoder.md): the ranked list's top
    # rerank_top_n re-scored by the cross-encoder saved in cross_encoder_dir (shoprank train-cross), ordered by its
    # rerank_score head. 0: off (the CPU default; on a GPU N ~ 100).
    cross_encoder_dir: str | None = None
    rerank_top_n: int = Field(0, ge=0, le=1000)
    rerank_score: Literal["relevance", "click"] = "relevance"
    # where the cross-encoder runs (docs/triton.md): "triton" scores through shoprank.triton.client.TritonCrossClient
    # with rerank_backend_options (url required; model_name, expected_version, failover, timeout_s, retries, ...)
    rerank_backend: Literal["inprocess", "triton"] = "inprocess"
    rerank_backend_options: dict[str, Any] | None = None
    # -- end cross-encoder phase

    def batch_settings(self) -> BatchSettings:
        """The batched deployments' default ``user_config`` (deployments may override it)."""
        return BatchSettings(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s)

    @field_validator("blend_weights")
    @classmethod
    def _known_weights(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(BLENDABLE_SCORES))
        if unknown:
            raise ValueError(f"unknown blend weight(s) {unknown}; choose from {list(BLENDABLE_SCORES)}")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("blend weights must be >= 0 with at least one > 0")
        return v

    @field_validator("served_log_dir")
    @classmethod
    def _absolute_log_dir(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else str(Path(v).expanduser().resolve())

    @field_validator("click_blend_weights")
    @classmethod
    def _blend_complete(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            BlendWeights.from_dict(v)  # raises ValueError naming missing features
        return v

    @field_validator("cross_encoder_dir")
    @classmethod
    def _absolute_cross_dir(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else str(Path(v).expanduser().resolve())

    @model_validator(mode="after")
    def _rerank_needs_model(self) -> ServingConfig:
        if self.rerank_top_n > 0 and self.cross_encoder_dir is None:
            raise ValueError("rerank_top_n > 0 needs cross_encoder_dir (a `shoprank train-cross` OUT/model)")
        if self.rerank_backend == "triton" and not (self.rerank_backend_options or {}).get("url"):
            raise ValueError("rerank_backend: triton needs rerank_backend_options.url (Triton's gRPC host:port)")
        return self

    @model_validator(mode="after")
    def _deep_enough(self) -> ServingConfig:
        if self.click_blend_weights is not None and self.num_candidates < CANDIDATES:
            raise ValueError(
                f"num_candidates must be >= {CANDIDATES} with click_blend_weights: the blend ranks the model's "
                f"top {CANDIDATES} (as shoprank eval --clicks does)"
            )
        return self
