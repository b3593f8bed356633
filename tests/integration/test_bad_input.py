"""Bad input: the CLI fails with one ``troth: …`` line and no traceback (cli.py docstring,
docs/design/decisions.md#done), and malformed requests never take a running server down
(docs/protocol/index.md#processing-order)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, envelope, free_port, now_ms, raw_http, server_command
from stores import require_postgres, server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server_command(), "serve", "--host", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], mentions: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("troth:"), lines[0]
    assert mentions.lower() in lines[0].lower(), lines[0]


def test_port_out_of_range() -> None:
    _assert_one_line_error(_serve("--port", "99999", "--metrics-port", "0", "--store", ":memory:"), "99999")


def test_api_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve("--port", str(port), "--metrics-port", "0", "--store", ":memory:")
    _assert_one_line_error(result, str(port))
    _assert_one_line_error(result, "choose another port with --port N")


def test_metrics_are_on_the_api_port_unless_a_metrics_port_is_asked_for() -> None:
    """A busy 9090 (the official server's metrics port) cannot stop a default start: there is no
    separate metrics listener unless --metrics-port asks for one."""
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 9090))
            busy.listen()
        except OSError:
            pass  # something else holds 9090 already: busy all the same
        with ServerProcess(server_store(), metrics_port=None) as server:
            assert server.get("/metrics").text.startswith("#")


def test_metrics_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve("--port", "0", "--metrics-port", str(port), "--store", ":memory:")
    _assert_one_line_error(result, str(port))
    _assert_one_line_error(result, "choose another port with --metrics-port N")


def test_store_in_missing_directory() -> None:
    result = _serve("--port", "0", "--metrics-port", "0", "--store", "/nonexistent-dir/x.db")
    _assert_one_line_error(result, "/nonexistent-dir/x.db")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://troth@127.0.0.1:1/troth", "cannot connect"),
        ("postgres://nobody-here:secret@127.0.0.1/db", "login refused"),
        ("postgresql://postgres@127.0.0.1/no_such_database_here", "does not exist"),
        ("postgresql://postgres@no-such-host.invalid/db", "unknown host"),
    ],
)
def test_unusable_postgres_store_url(url: str, why: str) -> None:
    """A PostgreSQL URL that cannot be used is one line, without its password (the reasons that need a
    running PostgreSQL are skipped without one)."""
    if why in ("login refused", "does not exist"):
        require_postgres()
    result = _serve("--port", "0", "--metrics-port", "0", "--store", url)
    _assert_one_line_error(result, why)
    assert "cannot open PostgreSQL store" in result.stderr
    assert "secret" not in result.stderr


def test_store_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database\n" * 200)
    result = _serve("--port", "0", "--metrics-port", "0", "--store", str(junk))
    _assert_one_line_error(result, "junk.db")
    assert junk.read_bytes() == b"this is not an SQLite database\n" * 200  # left untouched


def test_store_that_is_a_directory(tmp_path: Path) -> None:
    _assert_one_line_error(_serve("--port", "0", "--metrics-port", "0", "--store", str(tmp_path)), "")


def test_port_in_use_does_not_touch_a_running_server() -> None:
    with ServerProcess(server_store()) as server:
        server.create("survivor")
        result = _serve("--port", str(server.port), "--metrics-port", str(free_port()), "--store", ":memory:")
        _assert_one_line_error(result, str(server.port))
        assert server.post("promise.get", {"id": "survivor"})[0] == 200


GARBAGE: list[bytes] = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b"42",
    b'"kind"',
    b"{",
    b'{"kind":',
    b"\xff\xfe\x00garbage",
    b"\x00" * 64,
    b'{"kind":"promise.create"}',
    b'{"kind":"promise.create","head":{},"data":{}}',
    b'{"kind":"promise.create","head":{"corrId":1,"version":"2026-04-01"},"data":{}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"1999-01-01"},"data":{}}',
    b'{"kind":"","head":{"corrId":"c","version":"2026-04-01"},"data":{}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":[]}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":"x"}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":1e400}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":'
    + b"9" * 40
    + b"}}",
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":-1}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":1.5}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"\\u0000","timeoutAt":1}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"\\ud800","timeoutAt":1}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":1,'
    b'"tags":{"resonate:target":"nats://x"}}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","timeoutAt":1,'
    b'"tags":{"k":1}}}',
    b'{"kind":"task.heartbeat","head":{"corrId":"c","version":"2026-04-01"},"data":{"pid":"p","tasks":[{}]}}',
    b'{"kind":"task.suspend","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a","version":0,'
    b'"actions":[]}}',
    b'{"kind":"schedule.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"s",'
    b'"cron":"99 * * * *","promiseId":"x","promiseTimeout":1,"promiseTags":{"resonate:target":"poll://any@g"}}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a",'
    b'"timeoutAt":9223372036854775808}}',
    b'{"kind":"task.acquire","head":{"corrId":"c","version":"2026-04-01"},"data":{"id":"a",'
    b'"version":18446744073709551616,"pid":"p","ttl":1}}',
    b'{"kind":"promise.create","head":{"corrId":"c","version":"2026-04-01","resonate:debug_time":'
    + b"9" * 30
    + b'},"data":{"id":"a","timeoutAt":1}}',
    b'{"kind":"debug.reset","head":{"corrId":"c","version":"2026-04-01"},"data":{}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"kind":"promise.get","head":{"corrId":"c","version":"2026-04-01"},"data":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
]


def test_garbage_bodies_never_take_the_server_down(server: ServerProcess) -> None:
    """A burst of every malformed body (three times over), then a valid request still succeeds."""
    for body in GARBAGE * 3:
        response = server.post_raw(body, {"content-type": "application/json"})
        assert response.headers.get("content-type") == "application/json"
        assert response.json()["head"]["status"] == response.status_code
    status, body = server.post("promise.create", {"id": "after-garbage", "timeoutAt": now_ms() + 60_000})
    assert status == 200, body
    assert server.returncode is None


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ServerProcess]:
    with ServerProcess(server_store()) as proc:
        yield proc


@pytest.mark.parametrize("body", GARBAGE, ids=[f"garbage{i}" for i in range(len(GARBAGE))])
def test_garbage_body_is_a_4xx_envelope(shared_server: ServerProcess, body: bytes) -> None:
    """Malformed input is the client's fault: a 4xx envelope with string data, never a 500 (§1.2, §1.4)."""
    response = shared_server.post_raw(body)
    assert 400 <= response.status_code < 500, (body[:120], response.status_code, response.text[:200])
    assert response.headers.get("content-type") == "application/json"
    payload = response.json()
    assert payload["head"]["status"] == response.status_code
    assert payload["head"]["version"] == "2026-04-01"
    assert isinstance(payload["data"], str)


def test_garbage_http_never_takes_the_server_down(server: ServerProcess) -> None:
    assert server.port is not None
    for request in [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS hello
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}",  # short body, then close
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /poll/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /poll/%zz/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\n",
    ]:
        with contextlib.suppress(OSError):  # the server may reset the connection; it must stay up
            raw_http("127.0.0.1", server.port, request, timeout=3, half_close=True)
    data = {"id": "after-raw", "timeoutAt": now_ms() + 60_000}
    body = json.dumps(envelope("promise.create", data)).encode()
    assert server.post_raw(body).status_code == 200
    assert server.returncode is None
