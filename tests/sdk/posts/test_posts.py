"""The SDK's requests over its own keep-alive connections (``troth.sdk.posts``, behind ``HttpTransport``):
failover between replicas, the per-request timeout, the token header, many requests within a bounded
pool, a server that closes a kept-alive connection, how an answer is framed and how large it may be, and
a clean stop. Every async test runs on asyncio's event loop and on uvloop's (``conftest.py``).

Real servers on loopback: a ``troth serve`` process wherever it can show the behaviour, else ``Peer``, a
small HTTP/1.1 server on a real socket in the test that misbehaves on purpose (refuses, resets, answers
503, closes a kept-alive connection, sends chunks, too much, or no HTTP at all). No timed assertions: a
test that waits too long fails by ``pytest-timeout``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import ServerProcess, free_port
from sdk.support import until
from troth.protocol import messages as wire
from troth.protocol.messages import reply_envelope
from troth.sdk.errors import ConnectorError
from troth.sdk.posts import LIMIT, MAX_BODY, Posts
from troth.sdk.transport import HttpTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def answer(corr: str, *, status: int = 200, extra: bytes = b"") -> bytes:
    """A whole HTTP answer: a ``promise.get`` reply saying 404 with ``Content-Length``."""
    body = reply_envelope("promise.get", corr, 404, "not found")
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status,
        extra,
        len(body),
        body,
    )


Behaviour = Callable[[int, str, asyncio.StreamWriter], Awaitable[bool]]
"""Answers request number ``n`` (from 1, over all connections) with ``corrId`` on ``writer``; returns
whether to keep the connection."""


class Peer:
    """An HTTP/1.1 server on a loopback socket whose answers ``behave`` writes."""

    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.heads: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                assert length is not None, head
                body = await reader.readexactly(int(length[1]))
                self.heads.append(head)
                corr = json.loads(body)["head"]["corrId"]
                if not await self.behave(len(self.heads), corr, writer):
                    writer.transport.close()
                    return
        finally:
            self.open -= 1


async def answers(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(corr))
    return True


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def is_not_found(result: wire.Answer[Any]) -> bool:
    return result.status == 404 and result.data is None


async def test_a_refused_a_reset_and_a_503_replica_are_left_for_the_next_at_once(
    sdk_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def resets(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        reset(writer)
        return False

    async def unavailable(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(corr, status=503))
        return True

    refused = f"http://127.0.0.1:{free_port()}"
    async with Peer(resets) as resetting, Peer(unavailable) as busy:
        urls = [refused, resetting.url, busy.url, sdk_server.url]
        transport = HttpTransport(",".join(urls), timeout=5)
        try:
            with caplog.at_level(logging.WARNING, logger="troth.sdk"):
                assert is_not_found(await transport.request(wire.promise_get("posts-failover")))
                assert is_not_found(await transport.request(wire.promise_get("posts-failover")))
        finally:
            await transport.stop()
    assert transport.url == sdk_server.url
    assert len(resetting.heads) == 1 and len(busy.heads) == 1  # the second request went straight on
    lines = [r.getMessage() for r in caplog.records]
    assert not any("cannot reach the server" in line for line in lines), lines  # no backoff
    assert sum("unreachable" in line for line in lines) == 2, lines  # refused and reset; 503 is quiet


async def test_a_whole_failed_round_backs_off_and_gives_up_at_unreachable_timeout() -> None:
    async with Peer(lambda n, corr, writer: asyncio.sleep(0, False)) as closes:
        urls = f"http://127.0.0.1:{free_port()},{closes.url}"
        transport = HttpTransport(urls, timeout=5, unreachable_timeout=0.3)
        try:
            with pytest.raises(ConnectorError, match="cannot reach the server at"):
                await transport.request(wire.promise_get("posts-round"))
        finally:
            await transport.stop()
    assert len(closes.heads) >= 1


async def test_no_answer_within_the_timeout_moves_to_the_next_replica(sdk_server: ServerProcess) -> None:
    async def silent(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        return True

    async with Peer(silent) as peer:
        transport = HttpTransport(f"{peer.url},{sdk_server.url}", timeout=0.3)
        try:
            assert is_not_found(await transport.request(wire.promise_get("posts-timeout")))
        finally:
            await transport.stop()
    assert len(peer.heads) == 1


async def test_the_request_carries_host_content_type_and_the_token() -> None:
    async with Peer(answers) as peer:
        with_token = HttpTransport(peer.url, token="tok-0123456789abcdef")
        without = HttpTransport(peer.url + "/")
        try:
            await with_token.request(wire.promise_get("posts-head"))
            await without.request(wire.promise_get("posts-head"))
        finally:
            await with_token.stop()
            await without.stop()
    port = peer.url.rsplit(":", 1)[1]
    first, second = (head.decode().lower().split("\r\n") for head in peer.heads)
    assert first[0] == "post / http/1.1" and second[0] == "post / http/1.1"
    assert f"host: 127.0.0.1:{port}" in first and "content-type: application/json" in first
    assert "authorization: bearer tok-0123456789abcdef" in first
    assert not any(line.startswith("authorization") for line in second)


def test_a_token_the_server_knows_is_accepted_and_no_token_is_refused(tmp_path: Path) -> None:
    token = "posts-token-0123456789"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{token} prefix=pt-\n")

    async def main(url: str) -> tuple[int, int]:
        good, bad = HttpTransport(url, token=token), HttpTransport(url)
        try:
            ok = await good.request(wire.promise_create("pt-1", int(time.time() * 1000) + 3_600_000))
            refused = await bad.request(wire.promise_get("pt-1"))
            return ok.status, refused.status
        finally:
            await good.stop()
            await bad.stop()

    with ServerProcess(":memory:", args=["--auth-tokens", str(tokens)]) as server:
        assert asyncio.run(main(server.url)) == (200, 401)


async def test_hundreds_of_concurrent_requests_wait_for_one_of_64_connections() -> None:
    waiting: list[tuple[str, asyncio.StreamWriter]] = []

    async def in_batches(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        waiting.append((corr, writer))  # answered only once the pool's every connection holds a request
        if len(waiting) == LIMIT:
            for corr, w in waiting:
                w.write(answer(corr))
            waiting.clear()
        return True

    async with Peer(in_batches) as peer:
        transport = HttpTransport(peer.url, timeout=30)
        try:
            got = await asyncio.gather(
                *(transport.request(wire.promise_get(f"posts-many-{i}")) for i in range(5 * LIMIT))
            )
        finally:
            await transport.stop()
    assert all(is_not_found(a) for a in got)
    assert peer.most_open == LIMIT and peer.connections == LIMIT  # each reused, none beyond the bound


async def test_a_real_server_answers_hundreds_of_concurrent_requests_over_a_bounded_pool(
    sdk_server: ServerProcess,
) -> None:
    transport = HttpTransport(sdk_server.url)
    try:
        for _ in range(2):
            got = await asyncio.gather(
                *(transport.request(wire.promise_get(f"posts-real-{i}")) for i in range(300))
            )
            assert all(is_not_found(a) for a in got)
            assert transport._posts is not None and 0 < transport._posts.connections() <= LIMIT
    finally:
        await transport.stop()


async def test_a_request_that_times_out_or_is_cancelled_while_waiting_for_its_turn_frees_it() -> None:
    async def silent(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        return True

    body = json.dumps({"head": {"corrId": "c1"}}).encode()
    async with Peer(silent) as peer, Peer(answers) as good:
        posts = Posts(token=None, tls=True, timeout=0.3, limit=1)
        try:
            results = await asyncio.gather(
                posts.post(peer.url, body), posts.post(peer.url, body), return_exceptions=True
            )
            assert all(isinstance(r, TimeoutError) for r in results), results
            posts.timeout = 600  # only the cancellation ends these
            first = asyncio.ensure_future(posts.post(peer.url, body))
            await until(lambda: len(peer.heads) >= 2, 60, "the first request at the silent peer")
            second = asyncio.ensure_future(posts.post(good.url, body))  # waits: the one turn is taken
            await until(lambda: len(posts._waiters) == 1, 60, "the second request waiting for a turn")
            assert not second.done()
            second.cancel()
            first.cancel()
            await asyncio.gather(first, second, return_exceptions=True)
            assert (await posts.post(good.url, body))[0] == 200
            assert (await posts.post(good.url, body))[0] == 200
            assert len(good.heads) == 2 and good.connections == 1
        finally:
            await posts.close()


async def test_a_connection_closed_while_idle_is_replaced_without_a_word(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def closes_the_second(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        if n == 2:  # as if its keep-alive ran out just as the request came: nothing of an answer
            return False
        writer.write(answer(corr))
        return True

    async with Peer(closes_the_second) as peer:
        transport = HttpTransport(peer.url, timeout=5, unreachable_timeout=None)
        try:
            with caplog.at_level(logging.DEBUG, logger="troth.sdk"):
                for _ in range(3):
                    assert is_not_found(await transport.request(wire.promise_get("posts-idle")))
        finally:
            await transport.stop()
    assert len(peer.heads) == 4 and peer.connections == 2
    assert not [r.getMessage() for r in caplog.records]


async def test_a_connection_closed_mid_answer_is_a_failed_replica(
    sdk_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def cuts_the_second(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        if n == 2:
            writer.write(answer(corr)[:40])
            return False
        writer.write(answer(corr))
        return True

    async with Peer(cuts_the_second) as peer:
        transport = HttpTransport(f"{peer.url},{sdk_server.url}", timeout=5)
        try:
            with caplog.at_level(logging.WARNING, logger="troth.sdk"):
                assert is_not_found(await transport.request(wire.promise_get("posts-cut")))
                assert is_not_found(await transport.request(wire.promise_get("posts-cut")))
        finally:
            await transport.stop()
    assert len(peer.heads) == 2 and transport.url == sdk_server.url  # not sent to the peer again
    assert any("unreachable" in r.getMessage() for r in caplog.records)


def test_a_real_server_closing_idle_connections_goes_unnoticed(tmp_path: Path) -> None:
    async def main(url: str) -> int:
        transport = HttpTransport(url, unreachable_timeout=None)
        try:
            assert is_not_found(await transport.request(wire.promise_get("posts-keepalive")))
            posts = transport._posts
            assert posts is not None and posts.connections() == 1
            await until(lambda: not posts.connections(), 60, "the server's 1 s keep-alive to end it")
            assert is_not_found(await transport.request(wire.promise_get("posts-keepalive")))
            return posts.connections()
        finally:
            await transport.stop()

    with ServerProcess(":memory:", args=["--keep-alive-timeout", "1"]) as server:
        assert asyncio.run(main(server.url)) == 1


async def test_answers_by_length_in_chunks_and_to_the_end_of_the_connection() -> None:
    async def framings(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        whole = answer(corr)
        body = whole.split(b"\r\n\r\n", 1)[1]
        if n == 1:
            writer.write(whole)
            return True
        if n == 2:  # chunked, in several writes
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (body[:10], body[10:25], body[25:]):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0)
            writer.write(b"0\r\n\r\n")
            return True
        if n == 3:  # content-length, but the server closes after it
            writer.write(answer(corr, extra=b"Connection: close\r\n"))
            return False
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
        return False  # its end is the connection's end

    async with Peer(framings) as peer:
        transport = HttpTransport(peer.url, timeout=5, unreachable_timeout=None)
        try:
            for _ in range(4):
                assert is_not_found(await transport.request(wire.promise_get("posts-framing")))
        finally:
            await transport.stop()
    assert len(peer.heads) == 4 and peer.connections == 2


async def test_an_answer_over_64_mib_is_refused() -> None:
    async def floods(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        block = b"x" * (1 << 20)
        try:
            for _ in range(MAX_BODY // len(block) + 1):
                writer.write(block)
                await writer.drain()
        except ConnectionError:
            pass
        return False

    async with Peer(floods) as peer:
        transport = HttpTransport(peer.url, timeout=30, unreachable_timeout=None)
        try:
            with pytest.raises(ConnectorError, match="larger than 67108864 bytes"):
                await transport.request(wire.promise_get("posts-large"))
        finally:
            await transport.stop()
    assert len(peer.heads) == 1  # refused, not retried


async def test_an_answer_that_grows_past_the_bound_is_refused_as_it_arrives() -> None:
    """No length announced (chunked): the bound is counted as the body arrives."""
    bound = 1 << 20

    async def floods(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"x" * (1 << 16)
        try:
            for _ in range(2 * bound // len(block)):
                writer.write(b"%x\r\n%s\r\n" % (len(block), block))
                await writer.drain()
        except ConnectionError:
            pass
        return False

    async with Peer(floods) as peer:
        posts = Posts(token=None, tls=True, timeout=60, max_body=bound)
        try:
            with pytest.raises(ConnectorError, match=f"larger than {bound} bytes"):
                await posts.post(peer.url, json.dumps({"head": {"corrId": "c1"}}).encode())
        finally:
            await posts.close()
    assert len(peer.heads) == 1


async def test_an_answer_that_is_not_http_is_refused() -> None:
    async def garbage(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        return True

    async with Peer(garbage) as peer:
        transport = HttpTransport(peer.url, timeout=5, unreachable_timeout=None)
        try:
            with pytest.raises(ConnectorError, match="not HTTP"):
                await transport.request(wire.promise_get("posts-garbage"))
        finally:
            await transport.stop()


async def test_stop_ends_requests_in_flight_and_closes_every_connection(sdk_server: ServerProcess) -> None:
    async def silent(n: int, corr: str, writer: asyncio.StreamWriter) -> bool:
        return True

    async with Peer(silent) as peer:
        busy = HttpTransport(peer.url, timeout=600, unreachable_timeout=None)  # only stop() ends them
        idle = HttpTransport(sdk_server.url)
        await asyncio.gather(*(idle.request(wire.promise_get(f"posts-stop-{i}")) for i in range(20)))
        pending = [asyncio.ensure_future(busy.request(wire.promise_get(f"posts-stop-{i}"))) for i in range(5)]
        await until(lambda: len(peer.heads) >= 5, 60, "five requests at the silent peer")
        pools = [busy._posts, idle._posts]
        await busy.stop()
        await idle.stop()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, ConnectorError) for r in results), results
        assert all(pool is not None and not pool._conns for pool in pools)  # every one closed, not closing
        await until(lambda: not peer.open, 60, "the peer to see each connection end")


STOPS = """
import asyncio, sys
from troth.protocol import messages as wire
from troth.sdk.transport import HttpTransport

async def main(url):
    transport = HttpTransport(url)
    await asyncio.gather(*(transport.request(wire.promise_get(f"posts-exit-{i}")) for i in range(100)))
    await transport.stop()
    print("stopped")

asyncio.run(main(sys.argv[1]))
"""


def test_a_process_that_stops_its_transport_leaves_nothing_unclosed(
    sdk_server: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "stops.py"
    script.write_text(STOPS)
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(script), sdk_server.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "stopped\n", done.stderr
    assert "nclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
