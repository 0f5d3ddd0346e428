"""Store errors that name the gRPC status they map to (the ingress reads ``grpc_status``)."""

from __future__ import annotations


class StoreUnavailable(ConnectionError):
    """The store could not be reached or did not confirm a write: nothing was acknowledged, retry."""

    grpc_status = "UNAVAILABLE"
