"""Finding 4 of issue 8 (SSRF through HTTP push) against a real server: loopback, private and link-local
targets are a 400 at create time unless ``--push-allow`` lists them; a name that resolves to loopback
only at push time reaches nothing; redirects are not followed (docs/operations/push.md)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.integration.test_http_push import Receiver
from tests.security.conftest import snap

from helpers import DEADLINE, ServerProcess, now_ms, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _requests(target: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every request kind that stores an address, each naming ``target``."""
    timeout = now_ms() + 3_600_000
    create = {"id": "t-1", "timeoutAt": timeout, "tags": {"resonate:target": target}}
    return {
        "promise.create": ("promise.create", create),
        "task.create": (
            "task.create",
            {"pid": "w", "ttl": 60_000, "action": {"kind": "promise.create", "head": {}, "data": create}},
        ),
        "listener": ("promise.register_listener", {"awaited": "existing", "address": target}),
        "schedule": (
            "schedule.create",
            {
                "id": "s",
                "cron": "* * * * * *",
                "promiseId": "s-{{.timestamp}}",
                "promiseTimeout": 60_000,
                "promiseTags": {"resonate:target": target},
            },
        ),
    }


INTERNAL = [
    "http://127.0.0.1:{port}/anything",
    "http://localhost:{port}/anything",
    "http://[::1]:{port}/x",
    "http://[::ffff:127.0.0.1]:{port}/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/x",
    "http://192.168.1.1/x",
    "http://0.0.0.0:{port}/x",
]


@pytest.mark.parametrize("template", INTERNAL)
def test_internal_targets_are_a_400_at_create_time(
    debug_server: ServerProcess, receiver: Receiver, template: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    target = template.format(port=port)
    debug_server.create("existing")
    before = snap(debug_server)
    for name, (kind, data) in _requests(target).items():
        status, body = debug_server.post(kind, data)
        assert status == 400, (name, body)
        assert "refused" in body["data"] and "--push-allow" in body["data"], body["data"]
    assert snap(debug_server) == before
    assert receiver.received.empty()


def test_a_listed_loopback_target_is_pushed(receiver: Receiver) -> None:
    with ServerProcess(":memory:", args=["--push-allow", "127.0.0.0/8"]) as server:
        server.create("ok-1", tags={"resonate:target": f"{receiver.url}/hook"})
        path, _, message = receiver.get()
        assert path == "/hook" and message["kind"] == "execute"


def test_an_allow_list_refuses_what_it_does_not_name(receiver: Receiver) -> None:
    prefix = f"{receiver.url}/hooks/"
    with ServerProcess(":memory:", args=["--push-allow", prefix]) as server:
        server.create("in", tags={"resonate:target": prefix + "a"})
        assert receiver.get()[0] == "/hooks/a"
        for target in (f"{receiver.url}/admin", "https://example.com/x", f"{receiver.url}/hooksx"):
            status, body = server.post(
                "promise.create",
                {"id": "out", "timeoutAt": now_ms() + 60_000, "tags": {"resonate:target": target}},
            )
            assert status == 400, (target, body)


def _loopback_alias() -> str | None:
    """A name other than localhost that this machine resolves to a loopback address (/etc/hosts)."""
    candidates = {socket.gethostname()}
    try:
        with open("/etc/hosts") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                candidates.update(fields[1:])
    except OSError:
        pass
    for name in sorted(candidates):
        if name == "localhost" or name.endswith(".localhost") or "localhost" in name:
            continue
        try:
            infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        if infos and all(info[4][0].startswith("127.") or info[4][0] == "::1" for info in infos):
            return name
    return None


def test_a_name_resolving_to_loopback_at_push_time_reaches_nothing(receiver: Receiver) -> None:
    """DNS rebinding: the name passes the create-time check (it is not an address), but the server
    resolves it itself when it pushes and refuses the loopback answer."""
    alias = _loopback_alias()
    if alias is None:
        assert os.environ.get("TROTH_REQUIRE_SERVICES") != "1", "no name resolves to loopback here"
        pytest.skip("no name other than localhost resolves to loopback on this machine")
    port = receiver.url.rsplit(":", 1)[1]
    with ServerProcess(":memory:") as server:
        server.create("rebind", tags={"resonate:target": f"http://{alias}:{port}/x"})
        wait_until(
            lambda: (server.metric("troth_http_push_total", {"status": "error"}) or 0) >= 1,
            15,
            "a failed push",
        )
        assert receiver.received.empty()
        wait_until(
            lambda: "refused: it resolves to 127." in server.stderr, DEADLINE, "the refusal in the log"
        )
    # allowed when its addresses are listed
    with ServerProcess(":memory:", args=["--push-allow", "*,127.0.0.0/8"]) as server:
        server.create("rebind", tags={"resonate:target": f"http://{alias}:{port}/x"})
        assert receiver.get()[0] == "/x"


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("location", f"{receiver.url}/stolen")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    import threading

    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with ServerProcess(":memory:", args=["--push-allow", "127.0.0.1"]) as server:
            server.create("redir", tags={"resonate:target": f"http://127.0.0.1:{httpd.server_address[1]}/r"})
            wait_until(
                lambda: (server.metric("troth_http_push_total", {"status": "error"}) or 0) >= 1,
                15,
                "the push",
            )
            assert receiver.received.empty()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_bad_allow_entry_stops_the_server_with_one_line() -> None:
    server = ServerProcess(":memory:", args=["--push-allow", "http://[bad"])
    with pytest.raises(AssertionError, match="exited with 1"):
        server.start()
    assert server.stderr.strip().splitlines()[-1].startswith("troth: --push-allow")
    server.close()
