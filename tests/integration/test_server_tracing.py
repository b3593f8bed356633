"""``troth serve --otel`` (docs/sdk/tracing.md#server): a real server process exports its request spans over
OTLP/HTTP to a receiver this test runs; and the middleware itself, in-process, with the in-memory exporter.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import ServerProcess, wait_until
from stores import unit_store
from troth.server.engine import Engine, EngineConfig
from troth.server.http import App
from troth.server.tracing import Traced

pytestmark = pytest.mark.integration


class Receiver:
    """An OTLP/HTTP receiver: keeps the bodies POSTed to ``/v1/traces`` (protobuf; span names are plain
    bytes inside)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def seen(self) -> bytes:
        return b"".join(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def test_serve_otel_exports_request_spans(receiver: Receiver) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with ServerProcess(":memory:", args=["--otel"], env=env) as server:
        assert server.create("traced-request")["id"] == "traced-request"
        wait_until(lambda: b"troth promise.create" in receiver.seen(), 60.0, "the span reached the receiver")
    assert b"troth-server" in receiver.seen()  # the service name


async def test_spans_are_named_by_kind_and_continue_a_traceparent() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    engine = Engine(unit_store(), EngineConfig())
    await engine.start()
    try:
        app = Traced(App(engine), provider)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            body = {
                "kind": "promise.get",
                "head": {"corrId": "1", "version": "2026-04-01"},
                "data": {"id": "x"},
            }
            answer = await client.post("/", json=body, headers={"traceparent": caller})
            assert answer.status_code == 404
            assert (await client.get("/ready")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
    finally:
        await engine.stop()
    spans = {span.name: span for span in memory.get_finished_spans()}
    assert set(spans) == {"troth promise.get", "GET /ready"}  # /metrics is not traced
    get = spans["troth promise.get"]
    assert get.attributes["http.response.status_code"] == 404
    assert get.attributes["troth.kind"] == "promise.get"
    assert f"{get.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert get.parent is not None and f"{get.parent.span_id:016x}" == "b7ad6b7169203331"
    assert spans["GET /ready"].parent is None
