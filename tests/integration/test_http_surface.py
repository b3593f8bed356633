"""The HTTP surface of a real ``troth serve`` process (docs/protocol/index.md#http-surface,
docs/operations/metrics.md, docs/protocol/clients.md)."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers import (
    PROTOCOL_VERSION,
    ServerProcess,
    console_script,
    envelope,
    free_port,
    now_ms,
    raw_http,
    sample,
)
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_post_round_trip_echoes_kind_and_corr_id(server: ServerProcess) -> None:
    body = {
        "kind": "promise.create",
        "head": {"corrId": "corr-ÿ-42", "version": PROTOCOL_VERSION},
        "data": {"id": "rt-1", "timeoutAt": now_ms() + 60_000, "param": {}, "tags": {}},
    }
    response = server.client.post("/", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["kind"] == "promise.create"
    assert payload["head"] == {"corrId": "corr-ÿ-42", "status": 200, "version": PROTOCOL_VERSION}
    assert payload["data"]["promise"]["id"] == "rt-1"
    assert payload["data"]["promise"]["state"] == "pending"

    # protocol-level errors: HTTP status line == head.status, JSON content type, string data
    for kind, data, status in [
        ("promise.get", {"id": "nope"}, 404),
        ("promise.get", {}, 400),
        ("no.such.kind", {}, 400),
        ("task.acquire", {"id": "rt-1", "version": 0, "pid": "p", "ttl": 10}, 404),
    ]:
        response = server.client.post("/", json=envelope(kind, data, {"corrId": f"c-{kind}"}))
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        payload = response.json()
        assert payload["kind"] == kind
        assert payload["head"]["corrId"] == f"c-{kind}"
        assert payload["head"]["status"] == status
        assert isinstance(payload["data"], str)


def test_routing_404_405_410(server: ServerProcess) -> None:
    for path in ("/nope", "/poll", "/index.html", "/ready/x"):
        response = server.get(path)
        assert response.status_code == 404, path
        assert "json" not in response.headers.get("content-type", ""), path
        assert response.content == b""

    response = server.get("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "json" not in response.headers.get("content-type", "")
    assert b"/ui" in response.content  # a person who opens the server in a browser finds the dashboard
    put = server.client.put("/")
    assert put.status_code == 405
    assert put.content == b""

    for method, path in [
        ("GET", "/promises/x"),
        ("POST", "/promises"),
        ("DELETE", "/tasks/t"),
        ("GET", "/schedules"),
    ]:
        response = server.client.request(method, path)
        assert response.status_code == 410, (method, path)
        assert response.json() == {
            "error": "This endpoint is no longer supported. Please update to the latest SDK."
        }


def test_body_over_two_mib_is_413(server: ServerProcess) -> None:
    limit = 2 * 1024 * 1024
    # a body just under the limit is parsed (and rejected as a bad envelope, not as too large)
    small = json.dumps({"kind": "x", "pad": "a" * (limit - 100)}).encode()
    assert len(small) <= limit
    assert server.post_raw(small).status_code == 400

    big = b'{"kind":"promise.get","pad":"' + b"a" * limit + b'"}'
    response = server.post_raw(big)
    assert response.status_code == 413

    # the same without a Content-Length (chunked upload)
    def chunks():
        for _ in range(3):
            yield b"a" * (1024 * 1024)

    response = server.client.post("/", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413

    status, _ = server.post("promise.get", {"id": "still-alive"})
    assert status == 404


def test_health_and_ready(server: ServerProcess) -> None:
    for path in ("/health", "/ready"):
        response = server.get(path)
        assert response.status_code == 200
        assert response.content == b""


def _check_metrics(text: str) -> None:
    assert sample(text, "troth_requests_total", {"kind": "promise.create", "status": "200"}) == 2
    assert sample(text, "troth_requests_total", {"kind": "promise.get", "status": "404"}) == 1
    assert sample(text, "troth_request_duration_seconds_count", {"kind": "promise.create"}) == 2
    assert (
        sample(text, "troth_request_duration_seconds_bucket", {"kind": "promise.create", "le": "+Inf"}) == 2
    )
    assert sample(text, "troth_promises", {"state": "pending"}) == 1
    assert sample(text, "troth_promises", {"state": "resolved"}) == 1
    assert sample(text, "troth_promises", {"state": "rejected_timedout"}) == 0
    assert sample(text, "troth_tasks", {"state": "pending"}) == 1
    assert sample(text, "troth_tasks", {"state": "fulfilled"}) == 0
    assert sample(text, "troth_sse_connections") == 1
    assert sample(text, "troth_messages_total", {"kind": "execute"}) is not None
    assert sample(text, "troth_timer_lateness_seconds_count") is not None
    for name in (
        "troth_requests_total",
        "troth_request_duration_seconds",
        "troth_promises",
        "troth_tasks",
        "troth_sse_connections",
        "troth_messages_total",
        "troth_timer_lateness_seconds",
    ):
        assert f"\n{name}" in text or text.startswith(name), name


def test_metrics_on_api_port_and_metrics_port() -> None:
    metrics_port = free_port()
    with ServerProcess(server_store(), metrics_port=metrics_port) as server:
        worker = server.sse("mg", "w1")
        server.create("m-task", tags={"resonate:target": "poll://any@mg"})
        assert worker.get()["data"]["task"]["id"] == "m-task"
        server.create("m-plain")
        server.settle("m-plain")
        assert server.post("promise.get", {"id": "m-missing"})[0] == 404

        for port in (server.port, metrics_port):
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            _check_metrics(response.text)

        # the metrics listener serves nothing else
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/", timeout=5).status_code == 404
        assert httpx.post(f"http://127.0.0.1:{metrics_port}/", json={}, timeout=5).status_code == 404


def test_resonate_origin_header_line_is_accepted(server: ServerProcess) -> None:
    """The official Python SDK sends a raw header line ``resonate:origin: <origin>``
    (docs/protocol/clients.md#origin-header)."""
    body = json.dumps(envelope("promise.create", {"id": "hdr-1", "timeoutAt": now_ms() + 60_000})).encode()
    request = (
        b"POST / HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + b"resonate:origin: x\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )
    reply = raw_http("127.0.0.1", server.port or 0, request)
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert json.loads(payload)["data"]["promise"]["id"] == "hdr-1"
    assert server.post("promise.get", {"id": "hdr-1"})[0] == 200


def test_dev_command_via_console_script() -> None:
    """``troth dev`` (memory store) started through the console script answers the protocol."""
    program = [str(console_script())]
    with ServerProcess(subcommand="dev", program=program) as server:
        server.create("dev-1")
        assert server.settle("dev-1")["state"] == "resolved"
        assert server.get("/health").status_code == 200
        assert "(store :memory:)" in server.stderr
