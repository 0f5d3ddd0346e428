"""Start and stop the Serve application locally: used by ``shoprank serve``, the demo and the tests."""

from __future__ import annotations

import logging
from typing import Any

from shoprank.net import free_port
from shoprank.serving.client import DEFAULT_APPLICATION

log = logging.getLogger("shoprank.serving")


_started_port: int | None = None  # the gRPC port of the Serve this process started last


def start_serve(
    grpc_port: int | None = None, http_port: int | None = None, attempts: int = 5, reuse_running: bool = False
) -> int:
    """Start Serve (Ray must be initialised) with the gRPC proxy on ``grpc_port``; the port.

    Without ``grpc_port``, a free one, on a fresh Serve (one already running, e.g. left by an earlier
    caller, is shut down first: it would keep its own port): a port found free can be taken by another
    process (Ray starts workers that bind ephemeral ports) before the proxy binds it, so on a bind
    failure Serve is shut down and started again on another free port, up to ``attempts`` times.

    ``reuse_running``: when the Serve this process started last is still up, keep it (and the
    applications on it) and return its port; callers then remove their own applications."""
    global _started_port
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions
    from ray.serve.context import _get_global_client

    from shoprank.serve_app.app import GRPC_SERVICER_FUNCTIONS

    if reuse_running and grpc_port is None and _started_port is not None:
        if _get_global_client(raise_if_no_controller_running=False) is not None:
            return _started_port
    if grpc_port is None:
        serve.shutdown()

    for attempt in range(1 if grpc_port else attempts):
        port = grpc_port or free_port()
        try:
            serve.start(
                http_options=HTTPOptions(host="127.0.0.1", port=http_port or free_port()),
                grpc_options=gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
            )
            _started_port = port
            return port
        except Exception as e:
            if grpc_port or "Failed to bind" not in str(e) or attempt == attempts - 1:
                raise
            log.warning("Serve's proxy could not bind port %d (taken meanwhile); trying another", port)
            serve.shutdown()
    raise AssertionError("unreachable")


def deploy(app_args: dict[str, Any], name: str = DEFAULT_APPLICATION, blocking: bool = False) -> None:
    """Deploy (or roll out a new version of) the search app; returns once it is running."""
    from ray import serve

    from shoprank.serve_app.app import build_app

    serve.run(build_app(app_args), name=name, route_prefix=f"/{name}", blocking=blocking)


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
