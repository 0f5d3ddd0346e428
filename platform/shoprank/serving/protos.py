"""The generated gRPC code for ``protos/shoprank/v1/search.proto``, under short names, and the
SearchService registration for Serve's gRPC proxy.

The ``.proto`` files under ``protos/`` are the source of truth; ``pip install`` (editable or
not) compiles them into the ``shoprank.v1`` subpackage at build time (``setup.py``), so the
messages live inside the package and pickle by reference, as Ray needs. After editing a
``.proto``, reinstall (``make setup`` does it when the protos change).

Serve's proxy parses each request with the deserializer registered here, in the proxy, before any
shoprank code runs. The generated ``FromString`` raises on bytes that do not parse (garbage, a
truncated message, invalid UTF-8 in a string field), which gRPC answers with ``UNKNOWN``
"Unexpected DecodeError". :func:`lenient` instead hands such a request on as an
:class:`UnreadableRequest`, and the ingress answers ``INVALID_ARGUMENT`` "could not parse
SearchRequest ...". It also refuses, unread, a request over the size limit
(:mod:`shoprank.request_limits`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

try:
    from shoprank.v1 import search_pb2, search_pb2_grpc
except ImportError as e:  # a source tree that was never installed
    raise ImportError(
        "shoprank.v1 (generated from protos/) is missing: install the project (make setup / pip install .)"
    ) from e

from shoprank.request_limits import max_request_bytes

pb2: ModuleType = search_pb2
pb2_grpc: ModuleType = search_pb2_grpc
SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


@dataclass(frozen=True)
class UnreadableRequest:
    """A request the proxy could not read: over the size limit, or bytes that do not parse."""

    message: str  # the request type, e.g. "SearchRequest"
    size: int  # bytes received (after decompression)
    reason: str  # for INVALID_ARGUMENT, e.g. "could not parse SearchRequest (12 bytes): ..."


def lenient(cls: type) -> Callable[[bytes], Any]:
    """A request deserializer for ``cls`` that never raises: an :class:`UnreadableRequest` instead."""
    name = cls.DESCRIPTOR.name

    def parse(raw: bytes) -> Any:
        size, limit = len(raw), max_request_bytes()
        if size > limit:
            return UnreadableRequest(name, size, f"{name} is {size} bytes, over the {limit}-byte request limit")
        try:
            return cls.FromString(raw)
        except Exception as e:  # noqa: BLE001 - DecodeError, or the C runtime's own error types
            detail = str(e)[:120] or type(e).__name__
            return UnreadableRequest(name, size, f"could not parse {name} ({size} bytes): {detail}")

    return parse


def _add_lenient(servicer: object, server: Any, module: ModuleType, service: str) -> None:
    """Register ``module``'s ``service`` (generated ``*_pb2``) on ``server`` with :func:`lenient`
    request deserializers; otherwise as the generated ``add_*Servicer_to_server`` does."""
    import grpc

    desc = module.DESCRIPTOR.services_by_name[service]
    handlers = {
        m.name: (grpc.unary_stream_rpc_method_handler if m.server_streaming else grpc.unary_unary_rpc_method_handler)(
            getattr(servicer, m.name),
            request_deserializer=lenient(getattr(module, m.input_type.name)),
            response_serializer=getattr(module, m.output_type.name).SerializeToString,
        )
        for m in desc.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(desc.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(desc.full_name, handlers)


def add_search_service(servicer: object, server: Any) -> None:
    """Serve's ``grpc_servicer_functions`` entry for ``shoprank.v1.SearchService``."""
    _add_lenient(servicer, server, search_pb2, "SearchService")


def add_health_service(servicer: object, server: Any) -> None:
    """Serve's ``grpc_servicer_functions`` entry for ``grpc.health.v1.Health`` (Check, Watch)."""
    from grpc_health.v1 import health_pb2

    _add_lenient(servicer, server, health_pb2, "Health")
