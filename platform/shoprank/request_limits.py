"""Request-size limits: one setting, applied at Serve's gRPC proxy and on every internal channel.

``$SHOPRANK_MAX_REQUEST_BYTES`` (default 1 MiB) is the largest request the service reads. It is
read where Serve's processes start (:func:`shoprank.ray_runtime.apply_serve_perf_env` puts
:func:`serve_limit_env` into the environment before Ray starts; replicas get it through their
runtime env), and enforced in two layers at the proxy:

- up to twice the limit, gRPC hands the bytes to the request deserializer
  (:func:`shoprank.serving.protos.lenient`), which refuses anything over the limit without parsing
  it: the ingress answers ``INVALID_ARGUMENT`` naming the size and the limit;
- over twice the limit (``RAY_SERVE_GRPC_MAX_MESSAGE_SIZE``), gRPC itself answers
  ``RESOURCE_EXHAUSTED`` ("Received message larger than max (N vs. M)", or "Decompressed message
  larger than max" for a compressed one) before reading further: a compressed bomb stops
  inflating at this size, so the proxy never holds more than about twice the limit per request.

Serve's replica-to-replica channel (``RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH``) is set to at least
four times the limit (and never under gRPC's 4 MiB default), so a request the proxy admits can
never be refused inside the graph with ``INTERNAL``. For a cluster started outside shoprank (``ray
start``, KubeRay), put the same variables in the Ray nodes' environment.
"""

from __future__ import annotations

import os

MAX_REQUEST_BYTES_ENV = "SHOPRANK_MAX_REQUEST_BYTES"
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
_GRPC_DEFAULT = 4 << 20


def max_request_bytes() -> int:
    """The configured request limit in bytes (``$SHOPRANK_MAX_REQUEST_BYTES``, default 1 MiB)."""
    raw = os.environ.get(MAX_REQUEST_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_REQUEST_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"${MAX_REQUEST_BYTES_ENV}: expected a number of bytes, got {raw[:40]!r}") from None
    if not 1024 <= value <= 256 << 20:
        raise ValueError(f"${MAX_REQUEST_BYTES_ENV}: {value} is outside 1024..{256 << 20} bytes")
    return value


def serve_limit_env(limit: int | None = None) -> dict[str, str]:
    """Serve's environment for ``limit``: the proxy's hard gRPC cap and the internal channel's size."""
    limit = limit or max_request_bytes()
    return {
        MAX_REQUEST_BYTES_ENV: str(limit),
        "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(2 * limit),
        "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(max(_GRPC_DEFAULT, 4 * limit)),
    }
