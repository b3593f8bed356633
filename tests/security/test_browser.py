"""Finding 3 (cross-site and DNS-rebinding requests) against a real ``troth serve`` on loopback.

A page on another site can make the browser send a ``text/plain`` POST (no preflight) with its own
``Origin``; after DNS rebinding it can even send ``Host: attacker.example``. Each is refused and nothing is
created. ``--cors-origin`` allows a named origin (preflight answered, ``Access-Control-Allow-Origin`` on
answers); ``--allowed-host`` adds a name to the Host allow-list.
"""

from __future__ import annotations

import json

import pytest

from helpers import ServerProcess, envelope, now_ms, raw_http

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def body(id: str) -> bytes:
    return json.dumps(envelope("promise.create", {"id": id, "timeoutAt": now_ms() + 60_000})).encode()


def exists(server: ServerProcess, id: str) -> bool:
    return server.post("promise.get", {"id": id})[0] == 200


def test_the_reported_cross_site_posts_create_nothing(server: ServerProcess) -> None:
    attempts = [
        {"content-type": "text/plain", "origin": "http://attacker.example"},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded", "origin": "null"},
        {"content-type": "text/plain", "origin": "http://attacker.example", "host": "attacker.example"},
        {"content-type": "application/json", "origin": "http://attacker.example"},
        {"content-type": "application/json", "host": "attacker.example:8001"},
        {"content-type": "application/json", "host": "rebound.attacker.example"},
    ]
    for n, headers in enumerate(attempts):
        response = server.post_raw(body(f"xsite-{n}"), headers)
        assert response.status_code in (403, 415, 421), (headers, response.status_code, response.text)
        assert not exists(server, f"xsite-{n}"), headers
    # the same body from a program (no Origin, JSON, a loopback Host) works
    assert server.post_raw(body("program")).status_code == 200


def test_a_missing_content_type_is_refused(server: ServerProcess) -> None:
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body("bare"))
    ) + body("bare")
    assert raw_http("127.0.0.1", server.port or 0, request).startswith(b"HTTP/1.1 415")
    assert not exists(server, "bare")


def test_event_source_from_another_origin_cannot_take_a_workers_messages(server: ServerProcess) -> None:
    stream = server.sse("g", "w", wait=False, headers={"origin": "http://attacker.example"})
    assert stream.responded.wait(5)
    assert stream.status == 403
    assert server.get("/poll/g/w", headers={"host": "attacker.example"}).status_code == 421


def test_loopback_names_and_the_same_origin_pass(server: ServerProcess) -> None:
    port = server.port
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "LOCALHOST."]:
        assert server.get("/health", headers={"host": host}).status_code == 200, host
    same = {"origin": f"http://127.0.0.1:{port}", "host": f"127.0.0.1:{port}"}
    assert server.post_raw(body("same-origin"), same).status_code == 200


def test_preflights_without_cors_are_refused(server: ServerProcess) -> None:
    response = server.client.options(
        "/", headers={"origin": "http://app.example", "access-control-request-method": "POST"}
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert server.client.options("/").status_code == 405  # not a preflight: routing as before


def test_cors_origin_allows_a_named_origin_and_only_that() -> None:
    args = ["--cors-origin", "http://app.example", "--allowed-host", "troth.internal"]
    with ServerProcess(":memory:", args=args) as server:
        preflight = server.client.options(
            "/",
            headers={
                "origin": "http://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "http://app.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        answer = server.post_raw(body("cors-1"), {"origin": "http://app.example"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://app.example"
        assert answer.headers["vary"] == "Origin"
        assert server.post_raw(body("cors-2"), {"origin": "http://evil.example"}).status_code == 403
        assert not exists(server, "cors-2")
        assert server.get("/health", headers={"host": "troth.internal:8001"}).status_code == 200
        assert server.get("/health", headers={"host": "other.internal"}).status_code == 421
