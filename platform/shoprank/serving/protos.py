"""The generated gRPC code for ``protos/shoprank/v1/search.proto``, under short names.

The ``.proto`` files under ``protos/`` are the source of truth; ``pip install`` (editable or
not) compiles them into the ``shoprank.v1`` subpackage at build time (``setup.py``), so the
messages live inside the package and pickle by reference, as Ray needs. After editing a
``.proto``, reinstall (``make setup`` does it when the protos change).
"""

from __future__ import annotations

from types import ModuleType

try:
    from shoprank.v1 import search_pb2, search_pb2_grpc
except ImportError as e:  # a source tree that was never installed
    raise ImportError(
        "shoprank.v1 (generated from protos/) is missing: install the project (make setup / pip install .)"
    ) from e

pb2: ModuleType = search_pb2
pb2_grpc: ModuleType = search_pb2_grpc
SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


def add_search_service(servicer: object, server: object) -> None:
    """Serve's ``grpc_servicer_functions`` entry: registers the SearchService servicer."""
    search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server)
