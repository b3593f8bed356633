"""OpenTelemetry tracing of durable functions (docs/sdk/tracing.md), with the optional extra ``troth[otel]``.

``instrument(app)`` turns it on for a ``Troth`` (call it before ``start``/``async with``; the spans go to the
tracer provider you set up, e.g. an OTLP exporter to Jaeger or a collector):

* **a span per execution of a durable function**: ``troth.run <func>`` for a task's function (a workflow
  run, or one resumption of it after a suspension) and ``troth.step <func>`` for a local step
  (``ctx.run``), with the attributes ``troth.promise_id``, ``troth.origin_id``, ``troth.function``,
  ``troth.attempt`` and ``troth.outcome`` (``resolved``, ``rejected``, ``suspended``); a failed attempt
  records its exception and the error status. A replayed step does not run, so it has no span again.
* **one trace across processes**: every promise the instrumented process creates (``promise.create``,
  also inside ``task.create``, ``task.fence`` and ``task.fence_batch``) carries the current span's W3C
  trace context in the tag ``troth:traceparent``; the process that executes the promise's function
  continues that trace, so a workflow, its steps and the ``rpc`` calls other workers run for it are one
  trace. A root created without
  one (``troth invoke``, an official SDK) gets a trace id derived from its id, so its resumptions, run by
  whichever workers, still share one trace.

The hooks are the fewest that see both ends, and public: ``troth.sdk.replay.invoke`` calls ``ACTIVE.run``
around the function's body (it knows the start, the end and the exception; ``ctx.info.step`` tells a task's
function from a local step), and ``Troth.wrap_transport`` puts ``TracingTransport`` between the client and
the server to add the tag (every promise the SDK creates goes through it). Nothing here reads a private
attribute of the SDK. Rejected: spans from the transport alone
(the function's body would not run inside its span, so nested calls could not join it); the
``observer`` hook of the test kit (it sees an attempt start, not its end); a tag per span attribute (tags
are the promise's, kept forever; one ``traceparent`` is enough to join).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from troth.protocol.messages import Answer, Request
from troth.sdk.errors import Suspended

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

    from troth.sdk.client import Troth

R = TypeVar("R")

__all__ = ["ACTIVE", "TRACEPARENT_TAG", "Tracing", "TracingTransport", "instrument", "uninstrument"]

TRACEPARENT_TAG = "troth:traceparent"
"""The promise tag that carries the creator's W3C trace context (``00-<trace>-<span>-<flags>``)."""


class Tracing:
    """Spans around durable functions (see the module docstring)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace

        self.tracer: Tracer = trace.get_tracer("troth", tracer_provider=provider)

    async def run(self, ctx: Any, body: Awaitable[Any]) -> Any:
        """Await ``body`` (the function of ``ctx``) inside its span."""
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        info = ctx.info
        root = not info.step
        parent = None if not root else _parent_of(info.tags, info.origin_id, info.id)
        name = f"troth.{'run' if root else 'step'} {info.func_name}"
        attributes = {
            "troth.promise_id": info.id,
            "troth.origin_id": info.origin_id,
            "troth.function": info.func_name,
            "troth.attempt": info.attempt,
        }
        token = otel_context.attach(parent) if parent is not None else None
        try:
            with self.tracer.start_as_current_span(
                name, kind=trace.SpanKind.INTERNAL, attributes=attributes, record_exception=False
            ) as span:
                try:
                    value = await body
                except Suspended:
                    span.set_attribute("troth.outcome", "suspended")
                    raise
                except BaseException as exc:
                    span.set_attribute("troth.outcome", "rejected")
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                    raise
                span.set_attribute("troth.outcome", "resolved")
                return value
        finally:
            if token is not None:
                otel_context.detach(token)


def _parent_of(tags: Mapping[str, str], origin_id: str, id: str) -> Any:
    """The context a task's function continues: the creator's (the tag), else a trace id from the root's id
    (so every resumption of an untagged root shares one trace)."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carried = tags.get(TRACEPARENT_TAG)
    if carried:
        found = TraceContextTextMapPropagator().extract({"traceparent": carried})
        if trace.get_current_span(found).get_span_context().is_valid:
            return found
    if origin_id != id:
        return None  # a child without a tag: the current context (if any) is all there is
    digest = hashlib.sha256(f"troth:{origin_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    remote = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(1))
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def traceparent() -> str | None:
    """The current span's W3C trace context, or ``None`` outside a span."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _tag(data: Any) -> None:
    """Add the current trace context to a ``promise.create``'s tags (a copy of them)."""
    if not isinstance(data, dict):
        return
    carried = traceparent()
    if carried is None:
        return
    tags = data.get("tags")
    tags = dict(tags) if isinstance(tags, dict) else {}
    tags.setdefault(TRACEPARENT_TAG, carried)
    data["tags"] = tags


def _tagged_action(action: Any) -> Any:
    """A copy of a fenced action, tagged when it creates a promise."""
    if not isinstance(action, dict) or action.get("kind") != "promise.create":
        return action
    if not isinstance(action.get("data"), dict):
        return action
    inner = dict(action["data"])
    _tag(inner)
    return {**action, "data": inner}


class TracingTransport:
    """A transport that tags the promises it creates with the current trace context (and otherwise
    forwards everything to the transport it wraps)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self, group: str, pid: str, on_message: Any) -> None:
        await self.inner.start(group, pid, on_message)

    async def request(self, request: Request[R]) -> Answer[R]:
        kind, data = request.kind, request.data
        if kind == "promise.create":
            data = dict(data)
            _tag(data)
        elif kind in ("task.create", "task.fence") and isinstance(data.get("action"), dict):
            data = {**data, "action": _tagged_action(data["action"])}
        elif kind == "task.fence_batch" and isinstance(data.get("actions"), list):
            data = {**data, "actions": [_tagged_action(a) for a in data["actions"]]}
        answer: Answer[R] = await self.inner.request(replace(request, data=data))
        return answer

    async def stop(self) -> None:
        await self.inner.stop()


ACTIVE: Tracing | None = None
"""The tracing in force in this process (``instrument``), read by ``troth.sdk.replay.invoke``."""


def instrument(app: Troth, tracer_provider: TracerProvider | None = None) -> None:
    """Trace ``app``'s durable functions and join its promises into traces (see the module docstring).

    Needs ``pip install 'troth[otel]'``; spans go to ``tracer_provider`` or the global one."""
    global ACTIVE
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        raise ImportError("tracing needs OpenTelemetry: pip install 'troth[otel]'") from None
    if ACTIVE is None or tracer_provider is not None:
        ACTIVE = Tracing(tracer_provider)
    if not isinstance(app.transport, TracingTransport):
        app.wrap_transport(TracingTransport)


def uninstrument() -> None:
    """Stop creating spans in this process (instrumented transports keep tagging, harmlessly)."""
    global ACTIVE
    ACTIVE = None
