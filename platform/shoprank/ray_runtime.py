"""How shoprank starts or joins Ray: one :func:`init_ray`, one runtime env, Serve's process env.

Every driver (the CLI, the job entrypoints, the demo, benches and tests) calls :func:`init_ray`
instead of ``ray.init``, so the options that matter are chosen in one place: join a cluster
(``address``, else ``$RAY_ADDRESS``) or start a local Ray (``num_cpus``), dashboard on or off,
driver logs, the runtime env, and Serve's environment.
"""

from __future__ import annotations

import os
from typing import Any

# The runtime env of every task and actor shoprank starts, and of every job it submits
# (shoprank.cli.jobs adds the working dir and the package): no hub access, and no tokenizer
# thread pools competing with Ray's workers.
RUNTIME_ENV_VARS: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# Ray Serve's per-request cost on the search path (measured with bench/serve_latency.py on 2
# cores: ~48 -> ~33 ms CPU per request at concurrency 16, with the access log off): request-path
# logs buffered instead of flushed per line (errors still flush at once), replica logs to files
# only (not also through stderr to the log monitor), and replica-to-replica calls over gRPC.
# These are three of the settings of Serve's own RAY_SERVE_THROUGHPUT_OPTIMIZED mode; the others
# (user code on the replica's main event loop, direct ingress) defeat @serve.batch or bypass the
# gRPC proxy here. Read when Serve's modules are imported, so they must be in the environment of
# every Serve process: apply_serve_perf_env() puts them in this process's environment before Ray
# starts (the proxy and controller inherit them); the replicas also get them through their
# runtime_env (shoprank.serve_app.app).
SERVE_PERF_ENV: dict[str, str] = {
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
}


def runtime_env() -> dict[str, Any]:
    """A fresh copy of the one runtime env (``{"env_vars": RUNTIME_ENV_VARS}``)."""
    return {"env_vars": dict(RUNTIME_ENV_VARS)}


def apply_serve_perf_env() -> None:
    """Put SERVE_PERF_ENV and the request-size limits (:func:`shoprank.request_limits.serve_limit_env`)
    into this process's environment (call before Ray starts; values already set win), so that Serve's
    proxy, controller and replicas, started from it, run with the same settings."""
    from shoprank.request_limits import serve_limit_env

    for key, value in {**SERVE_PERF_ENV, **serve_limit_env()}.items():
        os.environ.setdefault(key, value)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    dashboard: bool = False,
    log_to_driver: bool = False,
    serve: bool = False,
    with_runtime_env: bool = True,
    **kwargs: Any,
) -> bool:
    """Join the Ray cluster at ``address`` (else ``$RAY_ADDRESS``) or start a local one; True if this
    call initialised Ray, False if it already was.

    ``num_cpus`` and ``dashboard`` apply only to a local Ray. ``serve`` prepares this process for
    Serve (its perf env, a longer raylet start wait on loaded machines). ``with_runtime_env``
    attaches the one runtime env; a submitted job's driver passes False to keep the job's own.
    Other keyword arguments (e.g. ``_temp_dir``) go to ``ray.init``.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # never re-launch workers under `uv run`
    if serve:
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
        apply_serve_perf_env()
    address = address or os.environ.get("RAY_ADDRESS") or None
    opts: dict[str, Any] = {"address": address, "log_to_driver": log_to_driver, **kwargs}
    if address is None:
        opts.update(num_cpus=num_cpus, include_dashboard=dashboard)
    if with_runtime_env:
        opts["runtime_env"] = runtime_env()
    ray.init(**opts)
    return True
