"""SIGTERM drains: streams end, in-flight requests are answered, the process exits 0 (run.py docstring)."""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import DEADLINE, ServerProcess, envelope, now_ms, wait_until
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GRACE_EXCEEDED = "timeout graceful shutdown exceeded"
"""What uvicorn logs when it had to cancel requests or streams the drain should have ended by itself."""


class Hammer:
    """Threads sending promise.create until the server goes away; every answer is recorded."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.bad: list[str] = []
        self.errors = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self.stop.is_set():
                id = f"h{index}-{i}"
                data = {
                    "id": id,
                    "timeoutAt": now_ms() + 600_000,
                    "tags": {"resonate:target": "poll://any@g"},
                }
                try:
                    response = client.post("/", json=envelope("promise.create", data))
                except httpx.HTTPError:
                    self.errors += 1
                    return
                if response.status_code == 200:
                    self.acked.append(id)
                else:
                    self.bad.append(f"{response.status_code} {response.text}")
                i += 1


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    db = tmp_path / "drain.db"
    with ServerProcess(server_store(db)) as server:
        worker = server.sse("g", "w1")
        listener = server.sse("other", "l1")
        with Hammer(server.url) as hammer:
            wait_until(lambda: len(hammer.acked) >= 50, DEADLINE, "requests to flow")
            assert worker.get()["kind"] == "execute"
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            # the SSE streams end (cleanly, with the chunked terminator), then the process exits 0
            assert worker.ended.wait(DEADLINE), "the SSE stream did not end after SIGTERM"
            assert listener.ended.wait(DEADLINE)
            code = server.wait()
        assert code == 0, server.stderr
        # ended by the drain, not cut off when the graceful period ran out
        assert GRACE_EXCEEDED not in server.stderr, server.stderr
        assert worker.error is None, repr(worker.error)
        assert worker.bad_frames == []
        assert hammer.bad == [], hammer.bad[:5]
        assert "Traceback" not in server.stderr, server.stderr
        acked = list(hammer.acked)

        # everything answered before the exit is in the file
        server.restart()
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            lost = [
                id
                for id in acked
                if client.post("/", json=envelope("promise.get", {"id": id})).status_code != 200
            ]
        assert lost == []


def test_sigterm_idle_server_exits_zero_quickly(server: ServerProcess) -> None:
    worker = server.sse("g", "w1")
    assert server.terminate() == 0
    assert worker.ended.wait(DEADLINE)
    assert worker.error is None
    assert GRACE_EXCEEDED not in server.stderr, server.stderr
    assert "Traceback" not in server.stderr


def test_sigint_also_drains(server: ServerProcess) -> None:
    worker = server.sse("g", "w1")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.wait() == 0
    assert worker.ended.wait(DEADLINE)
    assert "Traceback" not in server.stderr


def test_request_in_flight_at_sigterm_is_answered(server: ServerProcess) -> None:
    """A request whose body is still arriving when SIGTERM lands is completed and answered."""
    assert server.port is not None and server.proc is not None
    first = json.dumps(envelope("promise.create", {"id": "before", "timeoutAt": now_ms() + 60_000})).encode()
    second = json.dumps(envelope("promise.create", {"id": "during", "timeoutAt": now_ms() + 60_000})).encode()

    def request(body: bytes) -> bytes:
        return (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request(first))  # the connection is accepted and served once before the signal
        assert reader.readline().startswith(b"HTTP/1.1 200")
        length = _skip_headers(reader)
        assert json.loads(reader.read(length))["data"]["promise"]["id"] == "before"

        partial = request(second)
        sock.sendall(partial[:-10])
        server.proc.send_signal(signal.SIGTERM)
        assert server.returncode is None or server.returncode == 0
        sock.sendall(partial[-10:])
        status_line = reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        length = _skip_headers(reader)
        assert json.loads(reader.read(length))["data"]["promise"]["id"] == "during"
        reader.close()
    assert server.wait() == 0
    assert "Traceback" not in server.stderr


def _skip_headers(reader: Any) -> int:
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return length
