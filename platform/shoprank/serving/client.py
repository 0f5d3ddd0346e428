"""SearchClient: the small Python client search services import to call shoprank over gRPC.

    from shoprank.serving.client import SearchClient

    with SearchClient("localhost:9000", token="...") as client:
        resp = client.search("winter boots", k=10, filters={"in_stock": True}, month=12)
        for item in resp.items:
            print(item.rank, item.item_id, item.title, item.score)

Every call sends the Serve application name (metadata ``application``), the bearer token when
given (``token``, or ``token_file``: an owner-only file holding it), and a deadline (``timeout``
seconds). Failures raise :class:`SearchError` carrying the gRPC status code name and message.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from shoprank.serving.protos import pb2, pb2_grpc

# Search and Rank are idempotent: the channel retries them on UNAVAILABLE (a replica lost, a rollout),
# up to 3 attempts within the call's deadline, with jittered backoff. Feedback is not retried here: an
# UNAVAILABLE write may still have been stored, so its caller resends with event_ids.
RETRY_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "shoprank.v1.SearchService", "method": m} for m in ("Search", "Rank")],
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]},
}]})  # fmt: skip
# The call's timeout in ms, sent as metadata (Serve's proxy does not forward gRPC deadlines), and the
# trailing metadata of a shed call: milliseconds to wait before retrying.
TIMEOUT_HEADER = "shoprank-timeout-ms"
RETRY_AFTER_HEADER = "retry-after-ms"
DEFAULT_ADDRESS = "localhost:9000"
DEFAULT_APPLICATION = "shoprank"
_TYPED_FILTERS = {"category": (str,), "price_min": (int, float), "price_max": (int, float), "in_stock": (bool,)}


class SearchError(Exception):
    """A failed call: ``code`` is the gRPC status name (e.g. ``INVALID_ARGUMENT``); ``retry_after_s``:
    the server's hint when it shed the call (``RESOURCE_EXHAUSTED``), else None."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def build_filters(filters: dict[str, Any] | None) -> pb2.Filters | None:
    """Typed filter fields where the value has the right type; anything else goes by name (the
    server then validates it, so unknown names and bad values come back as INVALID_ARGUMENT)."""
    if not filters:
        return None
    out = pb2.Filters()
    for name, value in filters.items():
        types = _TYPED_FILTERS.get(name)
        if types and isinstance(value, types) and not (name != "in_stock" and isinstance(value, bool)):
            setattr(out, name, value)
        else:
            out.by_name[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class SearchClient:
    """A channel to shoprank's SearchService (plaintext or TLS) with auth and deadlines."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        application: str = DEFAULT_APPLICATION,
        token: str | None = None,
        token_file: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        server_name: str | None = None,
        timeout: float = 5.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        options: list[tuple[str, object]] = [("grpc.enable_retries", 1), ("grpc.service_config", RETRY_SERVICE_CONFIG)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if channel is not None:
            self.channel = channel
        elif tls or ca_file:
            from shoprank.serving.auth import channel_credentials

            self.channel = grpc.secure_channel(address, channel_credentials(ca_file), options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.metadata: list[tuple[str, str]] = [("application", application)]
        if token_file and not token:
            from shoprank.serving.auth import read_token_file

            token = read_token_file(token_file)
        if token:
            self.metadata.append(("authorization", f"Bearer {token}"))
        self.stub = pb2_grpc.SearchServiceStub(self.channel)

    # -- calls --------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        user_id: str | None = None,
        locale: str = "",
        month: int = 0,
        campaign: str = "",
        filters: dict[str, Any] | None = None,
        blend_weights: dict[str, float] | None = None,
        timeout: float | None = None,
    ) -> pb2.SearchResponse:
        req = pb2.SearchRequest(
            query=query,
            k=k,
            user_id=user_id or "",
            context=pb2.Context(locale=locale, month=month, campaign=campaign),
            filters=build_filters(filters),
            blend_weights=blend_weights or {},
        )
        return self._call(self.stub.Search, req, timeout)

    def rank(
        self,
        query: str,
        item_ids: list[str],
        *,
        k: int = 0,
        user_id: str | None = None,
        month: int = 0,
        blend_weights: dict[str, float] | None = None,
        timeout: float | None = None,
    ) -> pb2.SearchResponse:
        req = pb2.RankRequest(
            query=query,
            item_ids=list(item_ids),
            k=k,
            user_id=user_id or "",
            context=pb2.Context(month=month),
            blend_weights=blend_weights or {},
        )
        return self._call(self.stub.Rank, req, timeout)

    def feedback(self, events: list[dict[str, Any]], timeout: float | None = None) -> pb2.FeedbackResponse:
        """Send a batch of events (``FeedbackEvent`` fields: ``query``, ``item_id``, ``type`` as
        ``"click"``/``pb2.CLICK``, optional ``user_id``, ``request_id``, ``event_time_ms``, ``position``,
        ``event_id``). OK means stored; on ``UNAVAILABLE`` resend (with event_ids, nothing counts twice)."""

        def event(e: dict[str, Any]) -> pb2.FeedbackEvent:
            kind = e.get("type", 0)
            if isinstance(kind, str):
                kind = pb2.EventType.Value(kind.upper())
            return pb2.FeedbackEvent(**{**e, "type": kind})

        return self._call(self.stub.Feedback, pb2.FeedbackRequest(events=[event(e) for e in events]), timeout)

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The grpc.health.v1 status name (``SERVING`` when up)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = self._call(stub.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        timeout = timeout or self.timeout
        # Serve's proxy does not pass the call's deadline on: the ingress reads it from this header
        metadata = [*self.metadata, (TIMEOUT_HEADER, str(max(1, int(timeout * 1000))))]
        try:
            return method(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code().name if e.code() is not None else "UNKNOWN"
            trailing = dict(e.trailing_metadata() or ())
            retry_after = trailing.get(RETRY_AFTER_HEADER)
            raise SearchError(code, e.details() or "", float(retry_after) / 1000 if retry_after else None) from None

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
