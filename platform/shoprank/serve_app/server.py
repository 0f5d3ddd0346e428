"""Start and stop the Serve application locally: used by ``shoprank serve``, the demo and the tests."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from shoprank.serving.client import DEFAULT_APPLICATION

log = logging.getLogger("shoprank.serving")

# Ray Serve's per-request cost on the search path (measured with bench/serve_latency.py on 2
# cores: ~48 -> ~33 ms CPU per request at concurrency 16, with the access log off): request-path
# logs buffered instead of flushed per line (errors still flush at once), replica logs to files
# only (not also through stderr to the log monitor), and replica-to-replica calls over gRPC.
# These are three of the settings of Serve's own RAY_SERVE_THROUGHPUT_OPTIMIZED mode; the others
# (user code on the replica's main event loop, direct ingress) defeat @serve.batch or bypass the
# gRPC proxy here. Read when Serve's modules are imported, so they must be in the environment of
# every Serve process: apply_serve_perf_env() puts them in this process's environment before Ray
# starts (the proxy and controller inherit them); the replicas also get them through their
# runtime_env.
SERVE_PERF_ENV = {
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
}


def free_port() -> int:
    """A TCP port that is free right now on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def start_serve(grpc_port: int, http_port: int | None = None) -> None:
    """Start Serve (Ray must be initialised) with the gRPC proxy on ``grpc_port``."""
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from shoprank.serve_app.app import GRPC_SERVICER_FUNCTIONS

    serve.start(
        http_options=HTTPOptions(host="127.0.0.1", port=http_port or free_port()),
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )


def deploy(app_args: dict[str, Any], name: str = DEFAULT_APPLICATION, blocking: bool = False) -> None:
    """Deploy (or roll out a new version of) the search app; returns once it is running."""
    from ray import serve

    from shoprank.serve_app.app import build_app

    serve.run(build_app(app_args), name=name, route_prefix=f"/{name}", blocking=blocking)


def apply_serve_perf_env() -> None:
    """Put SERVE_PERF_ENV into this process's environment (call before Ray starts; values already
    set win), so that Serve's proxy and controller, started from it, run with the same settings."""
    for key, value in SERVE_PERF_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """A local Ray for serving (no dashboard), unless one is already initialised."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    apply_serve_perf_env()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, **kwargs)


def shutdown() -> None:
    """Stop Serve, then Ray (each best effort)."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    except Exception as e:  # noqa: BLE001 - shutting down anyway
        log.warning("serve.shutdown failed: %s", e)
    if ray.is_initialized():
        ray.shutdown()
