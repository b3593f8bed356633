"""A burst of executes for a worker that reads its stream slowly (docs/operations/delivery.md#bursts): the
stream is not cut; what does not fit its buffer waits and goes out as its socket drains, every execute
on the same connection. The retry timer is pushed out of reach, so nothing but the wait list delivers the
executes that did not fit."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from helpers import DEADLINE, ServerProcess, envelope, now_ms, post_many, wait_until
from stores import server_store
from troth.protocol import messages

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NO_RETRY = ["--retry-timeout", str(3_600_000)]
BURST = 5_000
PAD = "x" * 1000
"""Long task ids (the bound is 1,024 characters): 5 MB of frames, more than the sockets' buffers take."""
READ_DEADLINE = 120.0


class PausedStream:
    """``GET /poll/{group}/{pid}`` on a raw socket with a tiny receive buffer, read only when told to:
    a worker that is busy while a burst arrives, then reads in small pieces."""

    def __init__(self, port: int, group: str, pid: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /poll/{group}/{pid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self._raw = b""
        head = self._until(b"\r\n\r\n", DEADLINE)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower(), head

    def _recv(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the stream sent nothing more before the deadline")
        self.sock.settimeout(left)
        data = self.sock.recv(2048)
        if not data:
            raise AssertionError("the server closed the stream")
        self._raw += data

    def _until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self._raw:
            self._recv(deadline)
        out, self._raw = self._raw.split(marker, 1)
        return out

    def frames(self, timeout: float) -> Iterator[bytes]:
        """The SSE frames of the chunked body, read as they come, until ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        body = b""
        while True:
            while b"\r\n" not in self._raw:
                self._recv(deadline)
            size_line, rest = self._raw.split(b"\r\n", 1)
            size = int(size_line, 16)
            assert size > 0, "the server ended the stream"
            self._raw = rest
            while len(self._raw) < size + 2:
                self._recv(deadline)
            body += self._raw[:size]
            self._raw = self._raw[size + 2 :]
            while b"\n\n" in body:
                frame, body = body.split(b"\n\n", 1)
                yield frame

    def close(self) -> None:
        self.sock.close()


def test_a_slow_reader_receives_a_burst_of_executes_without_being_cut() -> None:
    with ServerProcess(server_store(), args=NO_RETRY) as server:
        assert server.port is not None
        stream = PausedStream(server.port, "burst", "slow")
        try:
            wait_until(lambda: server.metric("troth_sse_connections") == 1, DEADLINE, "the stream")
            deadline = now_ms() + 3_600_000
            target = {"resonate:target": "poll://any@burst"}
            ids = [f"burst-{n}-{PAD}" for n in range(BURST)]
            creates = [messages.promise_create(id, deadline, None, target) for id in ids]
            statuses = post_many(server, [envelope(c.kind, c.data) for c in creates])
            assert set(statuses) == {200}
            # The stream could not take the burst as it came: executes waited for room.
            waited = server.metric("troth_messages_total", {"kind": "execute", "outcome": "waiting"})
            assert waited is not None and waited > 0
            assert server.metric("troth_sse_overflows_total") == 0

            # Now the worker reads: every execute arrives, on this same connection.
            seen: set[str] = set()
            pattern = re.compile(rb'"task":\{"id":"(burst-\d+)-x+"')
            for frame in stream.frames(READ_DEADLINE):
                found = pattern.search(frame)
                assert found is not None, frame
                seen.add(found.group(1).decode())
                if len(seen) == BURST:
                    break
            assert seen == {f"burst-{n}" for n in range(BURST)}
            wait_until(lambda: server.metric("troth_executes_waiting") == 0, DEADLINE, "an empty wait list")
            assert server.metric("troth_sse_overflows_total") == 0
            assert server.metric("troth_sse_stalls_total") == 0
            assert server.metric("troth_sse_connections") == 1
            assert "closed: its buffer is full" not in server.stderr
        finally:
            stream.close()
