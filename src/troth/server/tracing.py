"""Request spans of the server (``troth serve --otel``, docs/sdk/tracing.md#server), with the optional
extra ``troth[otel]``.

``Traced`` wraps the ASGI app: one span per request, named by the protocol kind for ``POST /``
(``troth promise.create``, read from the start of the body without parsing it, so nothing is buffered)
and by the path otherwise (``GET /ready``), with ``http.request.method``, ``url.path`` and
``http.response.status_code``; a ``traceparent`` header continues the caller's trace. SSE streams
(``/poll/…``) and ``/metrics`` are not traced: a stream lasts as long as its worker, and scrapes are noise.
``exporter()`` sends the spans to OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``, the OpenTelemetry default
``http://localhost:4318``), service name ``troth-server`` unless ``OTEL_SERVICE_NAME`` says otherwise.

Rejected: spans inside the core (a request is one store transaction; its span is the request's);
OpenTelemetry's ASGI instrumentation package (one more dependency, and it names every span ``POST /``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_KIND: Final = re.compile(rb'"kind"\s*:\s*"([a-z_.]{1,40})"')
_UNTRACED: Final = ("/poll/", "/metrics")


class Traced:
    """An ASGI app with a span per request (see the module docstring)."""

    def __init__(self, app: ASGIApp, provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace

        self.app = app
        self.tracer = trace.get_tracer("troth.server", tracer_provider=provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_UNTRACED):
            await self.app(scope, receive, send)
            return
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        method: str = scope.get("method", "")
        carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"}
        parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
        token = otel_context.attach(parent) if parent is not None else None
        span = self.tracer.start_span(
            f"{method} {path}" if path != "/" else "POST /",
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        named = path != "/"

        async def receive_named() -> Message:
            nonlocal named
            message = await receive()
            if not named and message.get("type") == "http.request":
                named = True
                found = _KIND.search(bytes(message.get("body", b""))[:512])
                if found:
                    span.update_name(f"troth {found.group(1).decode()}")
                    span.set_attribute("troth.kind", found.group(1).decode())
            return message

        async def send_status(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=True):
                await self.app(scope, receive_named, send_status)
        finally:
            if token is not None:
                otel_context.detach(token)


def exporter_provider() -> TracerProvider:
    """A tracer provider that exports to OTLP/HTTP (the standard ``OTEL_EXPORTER_OTLP_*`` variables)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or "troth-server"
    provider = SdkProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
