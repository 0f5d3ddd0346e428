"""The Serve application: ``build_app(args)`` builds the deployment graph behind the gRPC ingress.

``serve run deployments/serve_config.yaml`` / ``serve deploy`` use it through the config's
``import_path: shoprank.serve_app:build_app`` (the installed package, so from any directory);
``shoprank serve`` calls it directly.

Batch settings: each batched deployment (QueryIntent, CandidateRetriever, MultiTaskRanker) takes
its ``max_batch_size``/``batch_wait_timeout_s`` from its ``user_config`` (``args.serving`` gives the
default; a ``user_config`` under ``deployments:`` in serve_config.yaml overrides it). Changing only
a user_config and ``serve deploy``-ing again reconfigures the live replicas in place.

The online store (``store_url``, e.g. ``redis://HOST:PORT/0``; ``store``: :class:`StoreConfig`
fields) is where ``Feedback`` writes events and the ranker's click blend reads its counts (see
:mod:`shoprank.serving.clicks`; a store that fails degrades responses, never fails them);
``shoprank serve``/``demo`` start a local one with :func:`shoprank.store.server.ensure_local_store`.
User ids are hashed with the salt in ``$SHOPRANK_ID_SALT`` or the owner-only file named by
``$SHOPRANK_ID_SALT_FILE`` (both passed on to every replica when set where the app is built; the
file must exist at that path on every node): set the same salt wherever logs are loaded into the
store (``shoprank events load``), or the histories won't meet. With neither set, ``build_app``
refuses (a ConfigError naming the risk) unless ``allow_default_salt`` (or
``$SHOPRANK_INSECURE_DEFAULT_SALT=1``) opts in to the public default salt: the demo and tests only.
See docs/privacy.md (and its salt rotation).

Rolling out a new index (or model) version: build the artefact to a new directory, then
``serve.run(build_app({... "index_dir": NEW ...}))`` (or ``serve deploy`` the edited YAML).
Serve starts replicas with the new arguments before it drains the old ones, so requests keep
flowing, and every response names the ``index_version`` and ``model_version`` that served it.
A sharded index (manifest ``shards``) deploys one ``RetrieverShard{s}`` per shard behind a router
named ``CandidateRetriever``; its rollout swaps all shards together (no response mixes versions:
see :mod:`shoprank.serve_app.retriever`). Keep the shard count across a rollout, or roll a new
shard count out as a new application.

Observability (docs/observability.md): the replicas log JSON lines (``log_encoding``), export the
metrics of :mod:`shoprank.serve_app.metrics` through Ray, and trace requests when ``tracing.enabled``
(:mod:`shoprank.serve_app.tracing`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from shoprank.hashing import DEFAULT_SALT_ENV, INSECURE_SALT_ENV, SALT_FILE_ENV, require_salt
from shoprank.ray_runtime import SERVE_PERF_ENV
from shoprank.retrieval.artefact import read_index_manifest
from shoprank.serve_app.ingress import SearchIngress
from shoprank.serve_app.intent import QueryIntent
from shoprank.serve_app.ranker import MultiTaskRanker
from shoprank.serve_app.retriever import CandidateRetriever, RetrieverShard, ShardedRetriever
from shoprank.serve_app.tracing import TracingArgs, tracing_env
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import check_versions_manifest
from shoprank.store.config import StoreConfig

# The import paths Serve's gRPC proxy needs (gRPCOptions.grpc_servicer_functions).
GRPC_SERVICER_FUNCTIONS = [
    "shoprank.serving.protos.add_search_service",
    "shoprank.serving.protos.add_health_service",
    "shoprank.serving.auth.add_tls_port",
]


class AppArgs(BaseModel):
    """Arguments of the application (the ``args:`` block of serve_config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    index_dir: str
    checkpoint: str | None = None
    encoder: str = "minilm"
    token: str | None = None  # prefer token_file or token_env: app args show in Serve's config
    token_file: str | None = None  # an owner-only file holding the token, read where the app is built
    token_env: str | None = "SHOPRANK_TOKEN"
    # Hash user ids with the public default salt when no salt is configured (demo and tests only).
    allow_default_salt: bool = False
    serving: dict[str, Any] = Field(default_factory=dict)  # ServingConfig fields
    # GPUs per replica of the two model deployments; None ("auto"): half a GPU each when the
    # Ray cluster has a GPU (both share one card), else 0. Their models then run on CUDA.
    ranker_num_gpus: float | None = Field(None, ge=0)
    intent_num_gpus: float | None = Field(None, ge=0)
    ranker_num_cpus: float = 0.5
    intent_num_cpus: float = 0.5
    # Replicas of the two model deployments. With two, losing one costs no request (the ingress retries
    # on the other); each costs its num_cpus and a copy of the model (~90 MB for MiniLM) in memory.
    ranker_num_replicas: int = Field(1, ge=1)
    intent_num_replicas: int = Field(1, ge=1)
    # Custom Ray resources per replica, e.g. {"ranker_gpu": 1} to pin to cluster.yaml's GPU nodes.
    ranker_resources: dict[str, float] = Field(default_factory=dict)
    intent_resources: dict[str, float] = Field(default_factory=dict)
    retriever_num_cpus: float = 0.25  # each CandidateRetriever replica, or each shard replica of a sharded index
    # A sharded index (docs/retrieval.md): replicas per shard deployment, and the fan-out router's CPUs.
    retriever_shard_replicas: int = Field(1, ge=1)
    retriever_router_num_cpus: float = 0.1
    ingress_num_cpus: float = 0.25
    # The cross-encoder phase (serving.rerank_top_n > 0): its reranker replica (GPUs as the ranker's) and its
    # rank-then-rerank router; with the defaults above the whole graph still fits 2 CPUs.
    reranker_num_cpus: float = 0.25
    rerank_router_num_cpus: float = 0.05
    ranker_device: str | None = None
    ranker_backend_options: dict[str, Any] | None = None  # kwargs for the serving.ranker_backend factory
    torch_threads: int | None = None
    strict_versions: bool = True
    ingress_max_ongoing_requests: int | None = None
    ingress_max_queued_requests: int | None = None
    # The online store Feedback writes to and the ranker's click blend reads (with blend weights: the
    # checkpoint's ``click_blend``, else ``serving.click_blend_weights``); None: Feedback answers
    # FAILED_PRECONDITION and the ranker is the model blend alone. ``store``: StoreConfig fields.
    store_url: str | None = Field(None, pattern=r"^(redis|rediss|unix)://")
    store: dict[str, Any] = Field(default_factory=dict)
    # Serve's per-request access log line in every replica. Off by default: the ingress logs
    # one line per request itself (hashed user id, k, candidates, batch, versions, latency), and
    # four access-log lines per search cost ~10% of the CPU of a request on 2 cores.
    access_log: bool = False
    # Replica log files (incl. the ingress's line per request) as JSON objects, one a line, or Serve's text.
    log_encoding: Literal["JSON", "TEXT"] = "JSON"
    # OpenTelemetry spans through Serve's tracing (shoprank.serve_app.tracing; docs/observability.md).
    tracing: TracingArgs = Field(default_factory=TracingArgs)


def _actor_options(extra_env: dict[str, str] | None = None, **opts: Any) -> dict[str, Any]:
    """Replica options: Serve's performance settings in every replica's environment."""
    import os

    # PASSIVE: idle OpenMP threads sleep instead of spinning, so the model replicas sharing a
    # node's cores do not slow each other's forward passes down.
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.update({k: os.environ.get(k, v) for k, v in SERVE_PERF_ENV.items()})
    # user hashes must match the ones loaded logs were keyed by (and the replicas must not refuse)
    for key in (DEFAULT_SALT_ENV, SALT_FILE_ENV, INSECURE_SALT_ENV):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.update(extra_env or {})
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


def _replicas(n: int) -> dict[str, int]:
    """``num_replicas`` only when more than one, so an ``autoscaling_config`` in serve_config.yaml
    (which excludes a fixed count) still applies by default."""
    return {"num_replicas": n} if n > 1 else {}


def _retriever(
    a: AppArgs, manifest: dict[str, Any], cfg: ServingConfig, trace_env: dict[str, str], batched: dict, logs: dict
) -> Any:
    """The retrieve stage: one CandidateRetriever, or for a sharded artefact one RetrieverShard deployment per
    shard (``RetrieverShard{s}``, ``retriever_shard_replicas`` replicas each) behind a ShardedRetriever router
    named CandidateRetriever (:mod:`shoprank.serve_app.retriever`)."""
    opts = _actor_options(trace_env, num_cpus=a.retriever_num_cpus)
    shards = manifest.get("shards") or []
    if not shards:
        return CandidateRetriever.options(ray_actor_options=opts, **batched).bind(a.index_dir, cfg.model_dump())
    handles = [
        RetrieverShard.options(
            name=f"RetrieverShard{s}", ray_actor_options=opts, **_replicas(a.retriever_shard_replicas), **logs
        ).bind(a.index_dir, s, cfg.model_dump())
        for s in range(len(shards))
    ]
    router_opts = _actor_options(trace_env, num_cpus=a.retriever_router_num_cpus)
    return ShardedRetriever.options(ray_actor_options=router_opts, **batched).bind(
        a.index_dir, handles, cfg.model_dump()
    )


def build_app(args: dict[str, Any]) -> Application:
    """The deployment graph for ``args`` (validated; unknown keys are rejected). Refuses to build
    without a configured user-id salt unless ``allow_default_salt`` (see the module docstring)."""
    import logging

    from shoprank.serving.auth import read_token_file

    a = AppArgs.model_validate(args)
    salt = require_salt(a.allow_default_salt, who="shoprank serving app")
    logging.getLogger("shoprank.serving").info("user ids hashed with salt %s", salt)
    token = a.token or (read_token_file(a.token_file) if a.token_file else None)
    a.index_dir = _resolve(a.index_dir)
    a.checkpoint = _resolve(a.checkpoint) if a.checkpoint else None
    cfg = ServingConfig.model_validate(a.serving)
    store_cfg = StoreConfig.model_validate(a.store)  # fail at build time, not in the replica
    index_manifest = read_index_manifest(a.index_dir)
    check_versions_manifest(a.checkpoint, a.encoder, index_manifest, a.index_dir, a.strict_versions)
    logs = {"logging_config": {"enable_access_log": a.access_log, "encoding": a.log_encoding}}
    trace_env = tracing_env(a.tracing)
    # the batched stages' batch settings, as user_config: reconfigure() applies them, in place on a change
    batched = {**logs, "user_config": cfg.batch_settings().model_dump()}
    intent_opts = _actor_options(
        trace_env, num_cpus=a.intent_num_cpus, num_gpus=auto_gpus(a.intent_num_gpus), resources=a.intent_resources
    )
    intent = QueryIntent.options(ray_actor_options=intent_opts, **_replicas(a.intent_num_replicas), **batched).bind(
        a.index_dir, a.checkpoint, a.encoder, torch_threads=a.torch_threads, serving=cfg.model_dump()
    )
    retriever = _retriever(a, index_manifest, cfg, trace_env, batched, logs)
    ranker_opts = _actor_options(
        trace_env, num_cpus=a.ranker_num_cpus, num_gpus=auto_gpus(a.ranker_num_gpus), resources=a.ranker_resources
    )
    ranker = MultiTaskRanker.options(ray_actor_options=ranker_opts, **_replicas(a.ranker_num_replicas), **batched).bind(
        a.index_dir, a.checkpoint, a.encoder, cfg.ranker_backend, a.ranker_backend_options,
        torch_threads=a.torch_threads, device=a.ranker_device, serving=cfg.model_dump(), store_url=a.store_url,
        store=store_cfg.model_dump(),
    )  # fmt: skip
    if cfg.rerank_top_n > 0:  # the cross-encoder phase (issue 23): the ingress's rank stage ranks, then reranks
        from shoprank.serve_app.reranker import CrossEncoderReranker, RankThenRerank

        rerank_opts = _actor_options(trace_env, num_cpus=a.reranker_num_cpus, num_gpus=auto_gpus(a.ranker_num_gpus))
        reranker = CrossEncoderReranker.options(ray_actor_options=rerank_opts, **batched).bind(
            cfg.model_dump(), torch_threads=a.torch_threads
        )
        router_opts = _actor_options(trace_env, num_cpus=a.rerank_router_num_cpus)
        ranker = RankThenRerank.options(ray_actor_options=router_opts, **logs).bind(ranker, reranker, cfg.rerank_top_n)
    ingress_opts: dict[str, Any] = {"ray_actor_options": _actor_options(trace_env, num_cpus=a.ingress_num_cpus), **logs}
    if a.ingress_max_ongoing_requests is not None:
        ingress_opts["max_ongoing_requests"] = a.ingress_max_ongoing_requests
    if a.ingress_max_queued_requests is not None:
        ingress_opts["max_queued_requests"] = a.ingress_max_queued_requests
    return SearchIngress.options(**ingress_opts).bind(
        intent, retriever, ranker, cfg.model_dump(), token, a.token_env, a.store_url, store_cfg.model_dump()
    )
