"""HTTP push delivery (docs/protocol/delivery.md#http-push): messages for ``http://`` addresses are POSTed to
a real HTTP receiver on loopback (allowed with ``--push-allow 127.0.0.1``); a failing receiver is counted and
costs nothing but the message. What the policy refuses is tested in tests/security/test_push_ssrf.py."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import ServerProcess
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class Receiver:
    """A real HTTP endpoint that records every POST and answers with a chosen status."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: queue.Queue[tuple[str, dict[str, str], dict[str, object]]] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.received.put((self.path, dict(self.headers), json.loads(body)))
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def get(self, timeout: float = 5.0) -> tuple[str, dict[str, str], dict[str, object]]:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """Receivers live on loopback, which HTTP push refuses unless listed (docs/operations/push.md)."""
    with ServerProcess(server_store(), args=["--push-allow", "127.0.0.1"]) as proc:
        yield proc


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_execute_is_pushed_to_an_http_target(server: ServerProcess, receiver: Receiver) -> None:
    server.create("push-1", tags={"resonate:target": f"{receiver.url}/hook"})
    path, headers, message = receiver.get()
    assert path == "/hook"
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"
    assert message == {
        "kind": "execute",
        "head": {"serverUrl": server.url},
        "data": {"task": {"id": "push-1", "version": 0}},
    }
    assert server.metric("troth_http_push_total", {"status": "success"}) == 1


def test_unblock_is_pushed_to_an_http_listener(server: ServerProcess, receiver: Receiver) -> None:
    server.create("push-2")
    server.listen("push-2", f"{receiver.url}/done")
    server.settle("push-2", "resolved", "ImRvbmUi")
    path, _, message = receiver.get()
    assert path == "/done"
    assert message["kind"] == "unblock"
    promise = message["data"]["promise"]  # type: ignore[index]
    assert promise["id"] == "push-2" and promise["state"] == "resolved"  # type: ignore[index]
    assert promise["value"] == {"data": "ImRvbmUi"}  # type: ignore[index]


def test_a_failing_receiver_is_counted_and_harmless(server: ServerProcess) -> None:
    failing = Receiver(status=500)
    try:
        server.create("push-3", tags={"resonate:target": f"{failing.url}/hook"})
        failing.get()
        server.create("push-4", tags={"resonate:target": "http://127.0.0.1:9/unreachable"})

        def counted() -> bool:
            return (server.metric("troth_http_push_total", {"status": "error"}) or 0) >= 2

        from helpers import wait_until

        wait_until(counted, 15, "two failed pushes counted")
        status, body = server.post("task.get", {"id": "push-3"})
        assert status == 200
        assert body["data"]["task"]["state"] == "pending"  # the retry timer will offer it again
    finally:
        failing.close()
