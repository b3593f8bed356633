"""A worker process for the tracing test: ``python tests/sdk/tracing_worker.py URL GROUP SPANS``.

It serves ``traced_child`` (one local step inside) on group ``GROUP`` with tracing on, writes ``ready`` to
``SPANS`` once connected, and then one JSON line per ended span (name, trace and span ids, parent id,
attributes), so the test can join them with its own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from troth import Context, Troth
from troth.sdk.tracing import instrument


class LineExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                line = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


async def child_step(ctx: Context, x: int) -> int:
    return x + 1


async def traced_child(ctx: Context, x: int) -> int:
    return await ctx.run(child_step, x) * 10  # type: ignore[no-any-return]


async def main(url: str, group: str, spans: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(LineExporter(spans)))
    app = Troth(url, group=group)
    app.register(traced_child)
    app.register(child_step)
    instrument(app, provider)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app:
        with open(spans, "a") as out:
            out.write("ready\n")
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
