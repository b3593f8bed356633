"""Finding 9 (connection exhaustion) against real ``troth serve`` processes.

* Sockets that stall in the middle of the headers or of the body, or send nothing at all, are cut off:
  with the default bounds, within 30 s (headers 10 s, body 30 s).
* A request header over the limit (a 1 MB header; a 50 MB one streamed) is refused with ``431`` and the
  server keeps serving.
* With authentication on, 1,000 hostile sockets (half-sent requests, and ``GET /poll`` without a token)
  do not lock a well-behaved worker out: it connects and receives its work while they are open, and each
  token's streams are capped, so one principal cannot take every stream slot.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authkit import Keys
from helpers import ServerProcess, free_port, now_ms, raw_http, sample, wait_until

from .conftest import call

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def open_socket(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reading whatever it sends); fails after ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept a stalled socket open for {limit:.0f}s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


@contextlib.contextmanager
def sockets(port: int, count: int, payload: bytes) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(open_socket(port, payload))
        yield opened
    finally:
        for sock in opened:
            sock.close()


PARTIAL_HEADERS = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic"
PARTIAL_BODY = (
    b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"ki'
)


def test_stalled_requests_are_cut_off_within_30_seconds_by_default(server: ServerProcess) -> None:
    port = server.port or 0
    stalled = {
        "nothing sent": open_socket(port, b""),
        "partial headers": open_socket(port, PARTIAL_HEADERS),
        "partial body": open_socket(port, PARTIAL_BODY),
    }
    results: dict[str, float | BaseException] = {}

    def watch(name: str, sock: socket.socket) -> None:
        try:
            results[name] = closed_after(sock, 45)
        except BaseException as exc:
            results[name] = exc

    threads = [threading.Thread(target=watch, args=item) for item in stalled.items()]
    for t in threads:
        t.start()
    # meanwhile the server serves everyone else
    status, body = server.post("promise.create", {"id": "during-stall", "timeoutAt": now_ms() + 60_000})
    assert status == 200, body
    for t in threads:
        t.join(60)
    for name, outcome in results.items():
        assert not isinstance(outcome, BaseException), (name, outcome)
        assert outcome <= 35, f"{name}: closed after {outcome:.1f}s"
    assert len(results) == 3
    for sock in stalled.values():
        sock.close()
    text = server.metrics(server.metrics_port or server.port)
    assert (sample(text, "troth_refused_total", {"reason": "header_timeout"}) or 0) >= 2
    assert (sample(text, "troth_refused_total", {"reason": "body_timeout"}) or 0) >= 1
    assert sample(text, "troth_limit", {"name": "max_header_bytes"}) == 64 * 1024
    assert sample(text, "troth_limit", {"name": "body_timeout_seconds"}) == 30


def test_an_oversized_header_is_refused_and_the_server_keeps_serving(server: ServerProcess) -> None:
    port = server.port or 0
    one_mb = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    with contextlib.suppress(OSError):  # the server may reset the connection while we still send
        answer = raw_http("127.0.0.1", port, one_mb, timeout=10)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]

    # 50 MB streamed: the server stops reading after 64 KiB and closes the connection
    sock = open_socket(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
    sent = 0
    with contextlib.suppress(OSError):
        chunk = b"b" * 65536
        while sent < 50_000_000:
            sock.sendall(chunk)
            sent += len(chunk)
    sock.close()
    assert sent < 50_000_000, "the server read a 50 MB header"
    status, body = server.post("promise.create", {"id": "after-big-header", "timeoutAt": now_ms() + 60_000})
    assert status == 200, body
    assert server.get("/health", headers={"x-fine": "a" * 30_000}).status_code == 200


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys.generate(tmp_path)


def test_a_thousand_hostile_sockets_do_not_lock_an_authenticated_worker_out(keys: Keys) -> None:
    metrics = free_port()
    args = [
        "--auth-public-key",
        str(keys.public_path),
        "--header-timeout",
        "3",
        "--max-connections-per-token",
        "100",
    ]
    with ServerProcess(":memory:", args=args, metrics_port=metrics) as server:
        port = server.port or 0
        worker_token = keys.token("w-", sub="worker")
        greedy = keys.token("h-", sub="hostile")
        unauthenticated = 0
        refused = 0
        with sockets(port, 500, PARTIAL_HEADERS) as stalled, sockets(port, 0, b"") as others:
            # 400 GET /poll without a token: each is answered 401 (the sockets stay open, idle)
            for i in range(400):
                sock = open_socket(port, f"GET /poll/w-g/h{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                others.append(sock)
                unauthenticated += sock.recv(100).startswith(b"HTTP/1.1 401")
            # 100 authenticated streams that never read, then more: the token's cap refuses the rest
            for i in range(120):
                auth = f"Authorization: Bearer {greedy}"
                request = f"GET /poll/h-g/h-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n\r\n"
                sock = open_socket(port, request.encode())
                others.append(sock)
                answer = sock.recv(100)
                assert answer.startswith(b"HTTP/1.1 503" if i >= 100 else b"HTTP/1.1 200"), (i, answer)
                refused += answer.startswith(b"HTTP/1.1 503")
            assert unauthenticated == 400
            assert refused == 20

            # a well-behaved worker connects and gets its work while all of that is open
            stream = server.sse("w-g", "w-1", headers={"authorization": f"Bearer {worker_token}"})
            for n in range(20):
                status, body = call(
                    server,
                    "promise.create",
                    {
                        "id": f"w-job-{n}",
                        "timeoutAt": now_ms() + 60_000,
                        "tags": {"resonate:target": "poll://any@w-g"},
                    },
                    worker_token,
                )
                assert status == 200, body
                message = stream.get(10)
                assert message["kind"] == "execute" and message["data"]["task"]["id"] == f"w-job-{n}"

            # the half-sent requests are cut off by the header deadline
            wait_until(
                lambda: (
                    (
                        sample(server.metrics(metrics), "troth_refused_total", {"reason": "header_timeout"})
                        or 0
                    )
                    >= 500
                ),
                30,
                "the stalled sockets to be cut off",
            )
            assert all(closed_after(sock, 10) >= 0 for sock in stalled[:20])


def test_a_body_answered_early_is_not_mistaken_for_headers(server: ServerProcess) -> None:
    """A 3 MB body is answered 413 from its Content-Length; the rest of the body that follows is body,
    not an oversized header (no 431 after the 413)."""
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 3000000\r\n\r\n"
    )
    sock = open_socket(server.port or 0, head)
    with contextlib.suppress(OSError):
        for _ in range(4):
            sock.sendall(b"x" * 65536)
    sock.settimeout(2)  # the connection stays open (the body deadline would end it); read what came
    received = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
            if len(received) > 10_000:
                break
    sock.close()
    assert received.startswith(b"HTTP/1.1 413"), received[:80]
    assert b"431" not in received, received


def test_a_dashboard_action_cut_off_mid_body_is_never_acted_on(server: ServerProcess) -> None:
    """A form whose client disconnects before its body is complete changes nothing: ``id=…&action=cancel``
    arrived whole, the rest never did, and the server does not act on what it has (it used to)."""
    status, body = server.post("promise.create", {"id": "cut-form", "timeoutAt": now_ms() + 600_000})
    assert status == 200, body
    port = server.port or 0
    form = b"id=cut-form&action=cancel"
    head = (
        f"POST /ui/a/settle HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHX-Request: true\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form) + 50}\r\n\r\n"
    ).encode()
    sock = open_socket(port, head + form)
    sock.shutdown(socket.SHUT_WR)  # the client is gone before the rest of its body
    closed_after(sock, 45)  # the server has finished with the request once it closes the connection
    sock.close()
    status, body = server.post("promise.get", {"id": "cut-form"})
    assert status == 200 and body["data"]["promise"]["state"] == "pending", body
