"""The SDK's hot path: ``POST /`` over a small pool of keep-alive HTTP/1.1 connections.

Every durable step is a request, so what one ``POST /`` costs the client's CPU is a cost of every step.
This module owns that path and nothing else: ``Posts.post(base, body)`` sends one JSON envelope to a
replica and returns the status and body of its answer. ``HttpTransport`` keeps the failover policy
(which replica next, when to back off) and keeps aiohttp for the rest — the SSE stream and the ``PUT``
that announces functions, each rare.

How it is built: asyncio's ``Protocol``/``Transport`` API, one ``_Conn`` per socket, ``httptools``
(llhttp, as uvicorn uses it) parsing answers. A request is one ``write`` of one buffer: the request line
and the fixed headers (``Host``, ``Content-Type: application/json``, ``Authorization`` when a token is
set) are built once per replica, and only ``Content-Length`` and the body change. Connections are
reused, most recently used first; at most ``limit`` (64, aiohttp's default, which the SDK used) requests
are in flight, and more wait for one to finish. A connection idle for ``keep_alive`` (15 s, below the
server's 20 s, so the client rather than the server ends it) is not reused.

Behaviour kept from the aiohttp client this replaces, each tested against real servers
(``tests/sdk/posts/``): ``timeout`` bounds a request as a whole (waiting for a connection, connecting,
the answer) and raises ``TimeoutError``; a refused, reset or closed connection raises ``OSError``
(``ConnectionError``); both make ``HttpTransport`` try the next replica. ``https://`` with the
``ssl.SSLContext`` of ``tls_context`` (client certificates included); a certificate that cannot be verified
raises ``CertificateError`` (a ``ConnectorError``: retrying cannot fix it). Answers framed by
``Content-Length``, chunked, or (HTTP/1.0 style) by the end of the connection; one over ``max_body``
(64 MiB) raises ``ConnectorError`` — at its ``Content-Length`` when it announces one, else as it
arrives — as does an answer that is not HTTP. New here: a reused connection
that the server closed while idle (its keep-alive ran out, it restarted) is noticed only when a request
is written to it; when nothing of the answer arrived, the request is sent again on another connection at
once, transparently (every protocol request is safe to send again; ``HttpTransport`` already relies on
that for failover). aiohttp reported that case as a failed replica, and with one URL the SDK backed off
for a second.

Measured before choosing (``python -m benchmarks.client_request``: 3,000 sequential ``promise.get`` to a
real ``troth serve`` on loopback, this process's CPU per request, interleaved rounds on the shared 2-core
machine under load): aiohttp as the SDK used it (``ClientSession.post`` and ``read``) 223–286 µs; aiohttp
driven as cheaply as its public options allow (a pre-parsed ``yarl.URL``, no automatic headers, no
decompression, no context manager) 226–380 µs, no better — the cost is its per-request
``ClientRequest``/``ClientResponse``/``StreamReader`` machinery, not the options; this design 87–126 µs, of
which the socket calls and the event loop's poll are most. Per workflow (``python -m benchmarks.cpu``,
median of three interleaved runs), the SDK process's CPU went from 3.22 to 1.46 ms for one step and from
12.3 to 6.4 ms for ten. Rejected: httpx (the SDK measured it at four times aiohttp's cost when it chose
aiohttp); aiohttp's lower-level connector API (private, and the response objects remain); HTTP/2 (no
server-side support in uvicorn, and multiplexing buys nothing over a pool on loopback or a LAN); a
``Protocol`` that pipelines several requests on one connection (one slow answer would stall the others,
and a reset would leave several requests with an unknown outcome to sort out).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

from troth.sdk.errors import ConnectorError

MAX_BODY: Final = 64 * 1024 * 1024
"""The largest answer accepted, in bytes."""

LIMIT: Final = 64
"""Requests in flight at once (so connections per replica)."""

KEEP_ALIVE: Final = 15.0
"""Seconds a connection may stay idle and still be reused (the server closes idle ones after 20 s)."""


class CertificateError(ConnectorError):
    """The server's certificate cannot be verified (retrying cannot fix that)."""


class _Lost(ConnectionError):
    """The connection ended before the whole answer arrived; ``received``: whether any of it had."""

    def __init__(self, message: str, received: bool) -> None:
        super().__init__(message)
        self.received = received


class _Origin:
    """One replica: where to connect, and the request's fixed bytes."""

    __slots__ = ("head", "host", "idle", "port", "server_hostname", "ssl")

    def __init__(self, base: str, token: str | None, tls: ssl.SSLContext | bool) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(f"not an http:// or https:// URL: {base!r}")
        https = parts.scheme == "https"
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if https else 80)
        except ValueError:
            raise ConnectorError(f"not a valid port in {base!r}") from None
        self.ssl: ssl.SSLContext | None = None
        self.server_hostname: str | None = None
        if https:
            self.ssl = tls if isinstance(tls, ssl.SSLContext) else ssl.create_default_context()
            self.server_hostname = self.host
        netloc = parts.netloc.rpartition("@")[2]
        head = f"POST {parts.path.rstrip('/')}/ HTTP/1.1\r\nHost: {netloc}\r\n"
        head += "Content-Type: application/json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self.head = (head + "Content-Length: ").encode("latin-1")
        self.idle: list[_Conn] = []


class _Conn(asyncio.Protocol):
    """One connection: at most one request in flight; ``waiter`` gets ``(status, body)`` or the failure."""

    def __init__(self, origin: _Origin, max_body: int) -> None:
        self.origin = origin
        self.max_body = max_body
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = 0
        self.framed = False
        """Whether the answer says where it ends (``Content-Length`` or chunked)."""
        self.received = False
        self.closed = False
        self.idle_since = 0.0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: a server that talks out of turn is not to be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:  # on_body refused it (too large); waiter already failed
            self.close()
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(ConnectorError(f"the server's answer is not HTTP/1.1: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        self.closed = True  # not to be reused in the moment before connection_lost
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.origin.idle.remove(self)
        if self.waiter is not None and not self.waiter.done():
            if self.status and not self.framed and exc is None:  # ends with the connection (HTTP/1.0)
                self._done()
            else:
                why = f": {exc}" if exc is not None else ""
                self._fail(_Lost(f"the connection closed before the answer ended{why}", self.received))
        if not self.lost.done():
            self.lost.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self.framed = True
            if value.strip().isdigit() and int(value) > self.max_body:  # refused before a byte of it
                self._fail(ConnectorError(f"the server's answer is larger than {self.max_body} bytes"))
                raise ValueError("too large")  # stops the parser (HttpParserCallbackError)
        elif lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(ConnectorError(f"the server's answer is larger than {self.max_body} bytes"))
            raise ValueError("too large")  # stops the parser (HttpParserCallbackError)
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # informational (``100 Continue``): the answer follows
            self.status = 0
            self.framed = False
            return
        if not self.parser.should_keep_alive():
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        self._done()

    # the rest

    def _done(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            chunks = self.chunks
            waiter.set_result((self.status, chunks[0] if len(chunks) == 1 else b"".join(chunks)))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def timed_out(self) -> None:
        """No whole answer in time: the connection is useless (the answer may still come)."""
        self._fail(TimeoutError())
        self.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Posts:
    """Keep-alive connections to one or several replicas of a server, for ``POST /`` (one per
    ``HttpTransport``, bound to the event loop that first uses it)."""

    def __init__(
        self,
        *,
        token: str | None,
        tls: ssl.SSLContext | bool,
        timeout: float,
        limit: int = LIMIT,
        keep_alive: float = KEEP_ALIVE,
        max_body: int = MAX_BODY,
    ) -> None:
        self._token = token
        self._tls = tls
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.max_body = max_body
        self.loop = asyncio.get_running_loop()
        self._origins: dict[str, _Origin] = {}
        self._conns: set[_Conn] = set()
        self._free = limit
        """Requests that may start now (``limit`` minus those in flight)."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    def connections(self) -> int:
        """Connections open now (idle or busy)."""
        return sum(1 for conn in self._conns if not conn.closed)

    async def post(self, base: str, body: bytes) -> tuple[int, bytes]:
        """``POST {base}/`` with ``body`` (a JSON envelope); the answer's status and body. ``TimeoutError``
        without a whole answer within ``timeout``; ``OSError`` when the replica cannot be reached or the
        connection fails; ``ConnectorError`` when retrying cannot help."""
        origin = self._origins.get(base)
        if origin is None:
            origin = self._origins[base] = _Origin(base, self._token, self._tls)
        loop = self.loop
        deadline = loop.time() + self.timeout
        if self._free > 0 and not self._waiters:
            self._free -= 1
        else:
            await self._wait_turn(deadline)
        try:
            data = b"%s%d\r\n\r\n%s" % (origin.head, len(body), body)
            while True:
                conn = self._idle(origin)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(origin, deadline)
                try:
                    return await self._exchange(conn, data, deadline)
                except _Lost as exc:
                    if reused and not exc.received and not self._closed:
                        continue  # closed by the server while idle: once more, on another connection
                    raise
        finally:
            self._free += 1
            if self._waiters:
                self._wake()

    def _idle(self, origin: _Origin) -> _Conn | None:
        idle = origin.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and self.loop.time() - conn.idle_since < self.keep_alive:
                return conn
            conn.close()
        return None

    async def _exchange(self, conn: _Conn, data: bytes, deadline: float) -> tuple[int, bytes]:
        waiter: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        conn.waiter = waiter
        conn.chunks = []
        conn.size = conn.status = 0
        conn.framed = conn.received = False
        timer = self.loop.call_at(deadline, conn.timed_out)
        assert conn.transport is not None
        try:
            conn.transport.write(data)
            answer = await waiter
        except BaseException:
            conn.abort()  # cancelled or failed mid-answer: the connection's state is unknown
            raise
        finally:
            timer.cancel()
            conn.waiter = None
        if not conn.closed and not self._closed:
            conn.idle_since = self.loop.time()
            conn.origin.idle.append(conn)
        return answer

    async def _connect(self, origin: _Origin, deadline: float) -> _Conn:
        loop = self.loop
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin, self.max_body),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.server_hostname,
                )
        except ssl.SSLCertVerificationError as exc:
            raise CertificateError(str(exc)) from None
        self._conns.add(conn)
        conn.lost.add_done_callback(lambda _: self._conns.discard(conn))
        if self._closed:  # stop() ran while this one connected
            conn.abort()
            raise ConnectionError("the transport is closing")
        return conn

    async def _wait_turn(self, deadline: float) -> None:
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # woken, but leaving: pass the turn on
                self._free += 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        """A turn is free: hand it to the first waiter still waiting."""
        while self._waiters and self._free > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._free -= 1
                waiter.set_result(None)

    async def close(self) -> None:
        """Close every connection (a request in flight fails with ``OSError``) and wait, briefly, until
        they are closed (no ``ResourceWarning``)."""
        self._closed = True
        conns = list(self._conns)
        for conn in conns:
            conn._fail(ConnectionError("the transport is closing"))
            conn.close()
        for origin in self._origins.values():
            origin.idle.clear()
        if conns:
            _, late = await asyncio.wait([conn.lost for conn in conns], timeout=1.0)
            for conn in conns:
                if not conn.lost.done():
                    conn.abort()
            if late:
                await asyncio.wait([conn.lost for conn in conns], timeout=1.0)
