"""OpenTelemetry spans across ingress -> QueryIntent -> CandidateRetriever -> MultiTaskRanker, via Serve's tracing.

Serve (``ray.serve._private.tracing_utils``) opens a span per request in every replica
(``replica_handle_request <Deployment> <method>``) and one per handle call (``route_to_replica``),
and carries the trace context across handle calls, so one Search is one trace: the ingress's span is
the parent of the three stage calls. (A coalesced batch is traced under the request that started it,
as Serve's own ``@serve.batch`` does: a span has one parent.)

Turn it on with the app arg ``tracing`` (:class:`TracingArgs`): ``build_app`` sets Serve's variables
``RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH`` (this module's :func:`span_processors`) and
``RAY_SERVE_TRACING_SAMPLING_RATIO`` in the replicas' environment. Where the spans go is read there:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``otlp_endpoint``) set:
  batched OTLP/gRPC export (``opentelemetry-exporter-otlp-proto-grpc``, a pinned dependency; the
  standard ``OTEL_*`` variables configure it; tested against a real OTLP trace endpoint);
- ``SHOPRANK_TRACE_DIR`` set: one JSON line per span into ``<dir>/spans-<pid>.jsonl``;
- neither: Serve's default file exporter (``<ray logs>/serve/spans/``).

A ``tracing_config`` at the top of a Serve config YAML (``serve deploy``) instead turns on Serve's
tracing cluster-wide, the proxy's span included; it wins over the app arg.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXPORTER_IMPORT_PATH = "shoprank.serve_app.tracing:span_processors"
TRACE_DIR_ENV = "SHOPRANK_TRACE_DIR"
OTLP_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class TracingArgs(BaseModel):
    """The app arg ``tracing``: off unless ``enabled``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    sampling_ratio: float = Field(0.01, ge=0.0, le=1.0)  # of requests traced (Serve's ParentBased sampler)
    otlp_endpoint: str | None = None  # e.g. http://otel-collector:4317; else $OTEL_EXPORTER_OTLP_ENDPOINT
    span_dir: str | None = None  # JSON lines per process; for tests and a look without a collector
    service_name: str = "shoprank"


def tracing_env(t: TracingArgs) -> dict[str, str]:
    """The replicas' environment for ``t`` (empty when tracing is off)."""
    if not t.enabled:
        return {}
    env = {
        "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": EXPORTER_IMPORT_PATH,
        "RAY_SERVE_TRACING_SAMPLING_RATIO": str(t.sampling_ratio),
        "OTEL_SERVICE_NAME": t.service_name,
    }
    for key in OTLP_ENVS:  # where the app is built, passed on
        if os.environ.get(key):
            env[key] = os.environ[key]
    if t.otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = t.otlp_endpoint
    if t.span_dir:
        env[TRACE_DIR_ENV] = str(Path(t.span_dir).resolve())
    return env


def span_processors() -> list[Any]:
    """Serve's tracing exporter hook (a function of no arguments): the span processors for this replica."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    out: list[Any] = []
    if any(os.environ.get(k) for k in OTLP_ENVS):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            raise ImportError("an OTLP endpoint is set: install opentelemetry-exporter-otlp-proto-grpc") from e
        out.append(BatchSpanProcessor(OTLPSpanExporter()))
    if os.environ.get(TRACE_DIR_ENV):
        out.append(SimpleSpanProcessor(JsonLinesSpanExporter(Path(os.environ[TRACE_DIR_ENV]))))
    if not out:
        from ray.serve._private.tracing_utils import default_tracing_exporter

        out = default_tracing_exporter(f"shoprank_{os.getpid()}_tracing.json")
    return out


class JsonLinesSpanExporter:
    """One compact JSON object per finished span, appended to ``<dir>/spans-<pid>.jsonl`` (an OTel
    ``SpanExporter`` by its methods)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(directory / f"spans-{os.getpid()}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for s in spans:
            self._file.write(json.dumps(span_record(s), separators=(",", ":")) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._file.closed:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._file.flush()
        return True


def span_record(span: Any) -> dict[str, Any]:
    """The fields of a finished span that a trace tree needs (ids in W3C hex)."""
    ctx, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in span.attributes.items()},
    }


def tag_request(request_id: str, method: str) -> None:
    """Name the response's ``request_id`` on the current (ingress) span, when tracing is on."""
    try:
        from ray.serve._private import tracing_utils as tu

        if tu.is_span_recording():
            tu.set_span_attributes({"shoprank_request_id": request_id, "rpc.method": method})
    except Exception:  # noqa: BLE001, S110 - Serve's private API moved: the span goes without the tag
        pass
