"""The Serve application: ``build_app(args)`` builds the deployment graph behind the gRPC ingress.

``serve run deployments/serve_config.yaml`` / ``serve deploy`` use it through the config's
``import_path: shoprank.serve_app:build_app`` (the installed package, so from any directory);
``shoprank serve`` calls it directly.

Rolling out a new index (or model) version: build the artefact to a new directory, then
``serve.run(build_app({... "index_dir": NEW ...}))`` (or ``serve deploy`` the edited YAML).
Serve starts replicas with the new arguments before it drains the old ones, so requests keep
flowing, and every response names the ``index_version`` and ``model_version`` that served it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from shoprank.retrieval.artefact import read_index_manifest
from shoprank.serve_app.ingress import SearchIngress
from shoprank.serve_app.intent import QueryIntent
from shoprank.serve_app.ranker import MultiTaskRanker
from shoprank.serve_app.retriever import CandidateRetriever
from shoprank.serve_app.server import SERVE_PERF_ENV
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import check_versions_manifest

# The import paths Serve's gRPC proxy needs (gRPCOptions.grpc_servicer_functions).
GRPC_SERVICER_FUNCTIONS = [
    "shoprank.serving.protos.add_search_service",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
    "shoprank.serving.auth.add_tls_port",
]


class AppArgs(BaseModel):
    """Arguments of the application (the ``args:`` block of serve_config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    index_dir: str
    checkpoint: str | None = None
    encoder: str = "minilm"
    token: str | None = None
    token_env: str | None = "SHOPRANK_TOKEN"
    serving: dict[str, Any] = Field(default_factory=dict)  # ServingConfig fields
    # GPUs per replica of the two model deployments; None ("auto"): half a GPU each when the
    # Ray cluster has a GPU (both share one card), else 0. Their models then run on CUDA.
    ranker_num_gpus: float | None = Field(None, ge=0)
    intent_num_gpus: float | None = Field(None, ge=0)
    ranker_num_cpus: float = 0.5
    intent_num_cpus: float = 0.5
    # Custom Ray resources per replica, e.g. {"ranker_gpu": 1} to pin to cluster.yaml's GPU nodes.
    ranker_resources: dict[str, float] = Field(default_factory=dict)
    intent_resources: dict[str, float] = Field(default_factory=dict)
    retriever_num_cpus: float = 0.25
    ingress_num_cpus: float = 0.25
    ranker_device: str | None = None
    ranker_backend_options: dict[str, Any] | None = None  # kwargs for the serving.ranker_backend factory
    torch_threads: int | None = None
    strict_versions: bool = True
    ingress_max_ongoing_requests: int | None = None
    ingress_max_queued_requests: int | None = None
    # Serve's per-request access log line in every replica. Off by default: the ingress logs
    # one line per request itself (hashed user id, k, candidates, batch, versions, latency), and
    # four access-log lines per search cost ~10% of the CPU of a request on 2 cores.
    access_log: bool = False


def _actor_options(**opts: Any) -> dict[str, Any]:
    """Replica options: Serve's performance settings in every replica's environment."""
    import os

    # PASSIVE: idle OpenMP threads sleep instead of spinning, so the model replicas sharing a
    # node's cores do not slow each other's forward passes down.
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.update({k: os.environ.get(k, v) for k, v in SERVE_PERF_ENV.items()})
    return {**opts, "runtime_env": {"env_vars": env}}


def _resolve(path: str) -> str:
    """Relative paths resolve against the directory ``serve run``/``shoprank serve`` runs in."""
    return str(Path(path).resolve())


def auto_gpus(requested: float | None) -> float:
    """A model deployment's ``num_gpus``: as requested, or 0.5 when the cluster has a GPU."""
    if requested is not None:
        return requested
    import ray

    return 0.5 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def build_app(args: dict[str, Any]) -> Application:
    """The deployment graph for ``args`` (validated; unknown keys are rejected)."""
    a = AppArgs.model_validate(args)
    a.index_dir = _resolve(a.index_dir)
    a.checkpoint = _resolve(a.checkpoint) if a.checkpoint else None
    cfg = ServingConfig.model_validate(a.serving)
    check_versions_manifest(a.checkpoint, a.encoder, read_index_manifest(a.index_dir), a.index_dir, a.strict_versions)
    batch = {"max_batch_size": cfg.max_batch_size, "batch_wait_timeout_s": cfg.batch_wait_timeout_s}
    logs = {"logging_config": {"enable_access_log": a.access_log}}
    intent_opts = _actor_options(
        num_cpus=a.intent_num_cpus, num_gpus=auto_gpus(a.intent_num_gpus), resources=a.intent_resources
    )
    intent = QueryIntent.options(ray_actor_options=intent_opts, **logs).bind(
        a.index_dir, a.checkpoint, a.encoder, torch_threads=a.torch_threads, **batch
    )
    retriever = CandidateRetriever.options(
        ray_actor_options=_actor_options(num_cpus=a.retriever_num_cpus), **logs
    ).bind(a.index_dir, cfg.model_dump(), **batch)
    ranker_opts = _actor_options(
        num_cpus=a.ranker_num_cpus, num_gpus=auto_gpus(a.ranker_num_gpus), resources=a.ranker_resources
    )
    ranker = MultiTaskRanker.options(ray_actor_options=ranker_opts, **logs).bind(
        a.index_dir, a.checkpoint, a.encoder, cfg.ranker_backend, a.ranker_backend_options,
        torch_threads=a.torch_threads, device=a.ranker_device, **batch,
    )  # fmt: skip
    ingress_opts: dict[str, Any] = {"ray_actor_options": _actor_options(num_cpus=a.ingress_num_cpus), **logs}
    if a.ingress_max_ongoing_requests is not None:
        ingress_opts["max_ongoing_requests"] = a.ingress_max_ongoing_requests
    if a.ingress_max_queued_requests is not None:
        ingress_opts["max_queued_requests"] = a.ingress_max_queued_requests
    return SearchIngress.options(**ingress_opts).bind(intent, retriever, ranker, cfg.model_dump(), a.token, a.token_env)
