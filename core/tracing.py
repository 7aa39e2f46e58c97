"""OpenTelemetry tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (README "Tracing").

`setup_tracing` installs the SDK's tracer provider with an OTLP/HTTP exporter and instruments Celery;
the API instruments FastAPI (api/app.py) and both instrument their SQLAlchemy engines (models/db.py).
Everything else the SDK reads itself from the standard OTEL_* variables (service name, sampler,
headers, batch sizes). Off, nothing is installed: ticketq's tracer hands out non-recording spans.

A job carries its trace as a W3C `traceparent`, stored on its outbox row when it is written and put
in the message's headers whenever it is (re)sent, so a job the relay sends again an hour later still
joins the trace of the request that wrote it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context, propagate, trace
from opentelemetry.util.types import AttributeValue

from core.settings import settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

TRACEPARENT = "traceparent"

tracer = trace.get_tracer("ticketq")

_provider: TracerProvider | None = None
_lock = threading.Lock()


def tracing_enabled() -> bool:
    return bool(settings.otel_exporter_otlp_endpoint)


def setup_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install this process's tracer provider once and instrument Celery; None when tracing is off.

    `service` names the process unless OTEL_SERVICE_NAME does. `exporter` replaces the OTLP one
    (tests); it then exports each span as it ends, instead of in batches."""
    global _provider
    if not tracing_enabled():
        return None
    with _lock:
        if _provider is not None:
            return _provider
        # Imported only when on: a process without tracing loads no exporter or instrumentation.
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        provider = TracerProvider(resource=resource)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
        _provider = provider
        return provider


def current_traceparent() -> str | None:
    """The current span's W3C traceparent (None outside a recorded trace, and always when off)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def message_headers(traceparent: str | None) -> dict[str, str] | None:
    """The headers a job's message carries: its trace, which the Celery instrumentation continues."""
    return {TRACEPARENT: traceparent} if traceparent else None


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Make the stored trace current while a job is sent: an instrumented producer's publish span
    then belongs to it (sent from a thread or from the relay, nothing else would be current)."""
    if not traceparent:
        yield
        return
    token = context.attach(propagate.extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[trace.Span]:
    """A span of ticketq's own work (a render, an SMTP send); non-recording when tracing is off.

    Attributes name orders and kinds, never people's addresses or names; a failure is recorded by its
    type only, as an SMTP reply or a template error may quote an address."""
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            raise
