"""The SDK's one seam to a server: send a protocol request, receive pushed messages.

``LocalTransport`` runs the server engine in-process (memory, or a SQLite file that survives restarts);
``HttpTransport`` speaks HTTP to ``POST /`` and keeps one SSE stream on ``GET /poll/{group}/{pid}``. The
rest of the SDK sees only ``Transport``, in the spirit of httpx's transports: switching from local to
remote is one URL.

A request is a ``troth.protocol.messages.Request`` (built by that module's functions), and its answer is
decoded here, once, in one pass, into the request's typed reply over the records of
``troth.protocol.records`` (docs/sdk/index.md#transports): the SDK reads attributes, never string keys of
decoded JSON. Rejected: answers as plain dicts converted to records further in (two passes over every
answer, and a typo in a key was a ``KeyError`` at run time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from troth.protocol.messages import (
    Answer,
    BadReply,
    Message,
    Request,
    decode_message,
    new_corr_id,
    parse_answer,
)
from troth.sdk.errors import ConnectorError
from troth.sdk.posts import CertificateError, Posts

if TYPE_CHECKING:
    from troth.server.delivery import Connection
    from troth.server.engine import Engine

log = logging.getLogger("troth.sdk")

OnMessage = Callable[[Message], None]
R = TypeVar("R")

_encode = msgspec.json.encode


_REFUSED = {
    401: " (no valid token: give Troth(token=…) or set TROTH_TOKEN)",
    403: " (the token's prefix does not cover this group and pid)",
    409: " (this pid's stream is held under another token)",
}
"""Stream refusals that retrying cannot fix: ``start()`` fails with them at once."""


class _Refused(ConnectorError):
    pass


class Transport(Protocol):
    """What the SDK needs from a server connection (``LocalTransport``, ``HttpTransport``,
    ``troth.testing.RecordingTransport``). Every failure to reach the server is a ``ConnectorError``."""

    @property
    def in_process(self) -> bool:
        """Whether the server runs inside this process (local mode), serving this process alone."""
        ...

    def has_worker(self, group: str) -> bool | None:
        """Whether a worker of ``group`` is connected, when this transport can tell without a request
        (``None`` when it cannot: a remote server)."""
        ...

    async def start(self, group: str, pid: str, on_message: OnMessage) -> None:
        """Open the push channel for ``(group, pid)``; returns once messages can arrive."""
        ...

    async def request(self, request: Request[R]) -> Answer[R]:
        """Send one request (built by ``troth.protocol.messages``); its answer, decoded into the request's
        typed reply."""
        ...

    async def stop(self) -> None: ...

    def idle(self) -> bool:
        """Whether no pushed message waits to be handed to the worker."""
        ...


def _check(request: Request[R], corr: str, body: bytes) -> Answer[R]:
    try:
        return parse_answer(request, corr, body)
    except BadReply as exc:
        raise ConnectorError(str(exc)) from None


def _deliver(on_message: OnMessage, payload: bytes) -> None:
    """Hand one pushed message to the worker; a malformed one, or one of a kind it does not know, is
    dropped with a line (a newer server may send kinds this SDK does not know)."""
    message = decode_message(payload)
    if message is None:
        log.warning("dropped an unreadable message: %.200r", payload)
        return
    on_message(message)


class LocalTransport:
    """An in-process server engine: requests are function calls, messages arrive through its delivery.

    It owns its engine unless one is given (several workers of a test sharing one server).
    """

    def __init__(self, path: str | None = None, *, engine: Engine | None = None) -> None:
        from troth.server.engine import Engine, EngineConfig
        from troth.server.store.sqlite import SqliteStore

        self._owns = engine is None
        self.engine = engine or Engine(
            SqliteStore(path or ":memory:"), EngineConfig(server_url="local://", exclusive=True)
        )
        self._reader: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._started = False

    def idle(self) -> bool:
        """Whether no pushed message waits to be handled."""
        return self._conn is None or self._conn.pending == 0

    @property
    def in_process(self) -> bool:
        return True

    def has_worker(self, group: str) -> bool | None:
        return self.engine.delivery.has_group(group)

    async def start(self, group: str, pid: str, on_message: OnMessage) -> None:
        if self._owns:
            await self.engine.start()
        self._started = True
        conn = self.engine.delivery.connect(group, pid)
        if conn is None:
            raise ConnectorError("the local server is at its connection limit")
        self._conn = conn

        async def read() -> None:
            while True:
                frames = await conn.frames()
                if frames is None:
                    return
                for frame in frames:
                    try:
                        _deliver(on_message, frame[6:])
                    except Exception:
                        log.exception("message handler failed")

        self._reader = asyncio.get_running_loop().create_task(read(), name="troth-local-messages")

    async def request(self, request: Request[R]) -> Answer[R]:
        corr = new_corr_id()
        try:
            _, body = await self.engine.handle(_encode(request.envelope(corr_id=corr)))
        except Exception as exc:  # what HttpTransport raises when the server cannot answer
            raise ConnectorError(f"{request.kind}: the in-process server failed: {exc}") from exc
        return _check(request, corr, body)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._conn is not None:
            self.engine.delivery.disconnect(self._conn)
            self._conn = None
        if self._started and self._owns:
            await self.engine.stop()
        self._started = False


def tls_context(ca: str | None, client_cert: str | tuple[str, str] | None) -> ssl.SSLContext | bool:
    """What aiohttp verifies ``https://`` servers with: the system's trust store (``True``) or ``ca``; with
    ``client_cert`` (a PEM holding certificate and key, or a ``(cert, key)`` pair) it also presents a
    client certificate (a server with ``--tls-client-ca``)."""
    if ca is None and client_cert is None:
        return True
    try:
        ctx = ssl.create_default_context(cafile=ca)
        if client_cert is not None:
            cert, key = client_cert if isinstance(client_cert, tuple) else (client_cert, None)
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectorError(f"cannot use the TLS files {ca or ''} {client_cert or ''}: {exc}") from None
    return ctx


class HttpTransport:
    """A remote server: JSON envelopes by ``POST {url}/``, messages on one SSE stream (reconnecting).

    ``url`` may list several replicas of one server, comma-separated (``http://a:8001,http://b:8001``):
    a replica that cannot be reached (or answers ``503``) is left for the next one at once, the stream
    reconnects to the next one, and only a whole round of failures waits (backing off up to 60 s).

    Requests (``POST /``, every durable step) go through ``troth.sdk.posts.Posts``, keep-alive
    connections on asyncio's protocol API with httptools parsing (a third of aiohttp's client CPU per
    request; that module says why). The SSE stream and the ``PUT`` announcing functions, each rare, use
    aiohttp (rather than httpx: a quarter of httpx's cost). The token goes in ``head.auth`` and in an
    ``Authorization: Bearer`` header on every request, the SSE stream included (it shares the session's
    headers); certificates are verified, against ``ca`` when given; ``client_cert`` is presented to a
    server that asks for one.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        unreachable_timeout: float | None = None,
        ca: str | None = None,
        client_cert: str | tuple[str, str] | None = None,
    ) -> None:
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()] or [url.rstrip("/")]
        self._current = 0
        self.token = token
        self.unreachable_timeout = unreachable_timeout
        self._down_since: float | None = None
        self._tls = tls_context(ca, client_cert)
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._posts: Posts | None = None
        self._sse: asyncio.Task[None] | None = None
        self._stopping = False
        self.functions: Callable[[], Iterable[str]] | None = None
        """The worker's registered function names, announced when the stream opens (``?functions=``), so
        ``troth invoke`` can say when no connected worker has the function it names; names registered
        later are announced with ``PUT /groups/{group}/{pid}`` (``announce``)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream_at: tuple[str, str, str] | None = None
        """(base URL, group, pid) of the open stream."""
        self._announcing: asyncio.Task[None] | None = None
        self._announce_wanted = False

    def idle(self) -> bool:
        """Messages are handed over as they are read from the stream: none ever waits here."""
        return True

    @property
    def in_process(self) -> bool:
        return False

    def has_worker(self, group: str) -> bool | None:
        return None

    @property
    def url(self) -> str:
        """The replica in use."""
        return self.urls[self._current]

    def _next_url(self, failed: str) -> bool:
        """Move on from ``failed`` to the next replica; ``True`` when a whole round has failed."""
        if self.urls[self._current] == failed:
            self._current = (self._current + 1) % len(self.urls)
        return self._current == 0 or len(self.urls) == 1

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300, ssl=self._tls),
            )
        return self._session

    def _poster(self) -> Posts:
        posts = self._posts
        if posts is None:
            posts = self._posts = Posts(token=self.token, tls=self._tls, timeout=self._timeout)
        return posts

    def announce(self) -> None:
        """The worker registered another function: tell the server its names again, soon (callable from
        any thread; one ``PUT`` at a time, each with every name registered by then). Before the stream
        opens there is nothing to do: opening it announces them."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._want_announce()
        else:
            loop.call_soon_threadsafe(self._want_announce)

    def _want_announce(self) -> None:
        self._announce_wanted = True
        if self._stream_at is not None and (self._announcing is None or self._announcing.done()):
            self._announcing = asyncio.get_running_loop().create_task(self._announce(), name="troth-announce")

    async def _announce(self) -> None:
        while self._announce_wanted and self._stream_at is not None and self.functions is not None:
            self._announce_wanted = False
            base, group, pid = self._stream_at
            url = f"{base}/groups/{quote(group, safe='')}/{quote(pid, safe='')}"
            body = {"functions": list(self.functions())}
            try:
                async with self._client().put(url, json=body) as response:
                    if response.status != 200:  # e.g. 404 while reconnecting: the new stream announces
                        log.debug("troth: announcing functions answered HTTP %d", response.status)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.debug("troth: could not announce functions (the next stream will): %s", exc)

    async def start(self, group: str, pid: str, on_message: OnMessage) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = False
        opened: asyncio.Future[None] = loop.create_future()
        self._sse = loop.create_task(self._stream(group, pid, on_message, opened), name="troth-sse")
        try:
            await opened
        except BaseException:  # gave up, or the caller did: leave no session or stream behind
            await self.stop()
            self._stopping = False
            raise

    def _reason(self, exc: BaseException) -> str:
        """Why a request failed, never blank (a timeout's own text is empty)."""
        if isinstance(exc, TimeoutError) and not str(exc):
            return f"no answer within {self._timeout:g} s"
        return str(exc) or type(exc).__name__

    async def _unreachable(self, exc: BaseException, delay: float, *, bounded: bool = True) -> float:
        """One line when the server becomes unreachable (not one per attempt), then wait ``delay``; returns
        the next delay (doubling up to 60 s). ``ConnectorError`` once the server has been unreachable for
        ``unreachable_timeout`` seconds, when that is set and ``bounded``."""
        reason = self._reason(exc)
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "troth: cannot reach the server at %s (%s); retrying with backoff %s",
                self.url,
                reason,
                "until it answers"
                if self.unreachable_timeout is None
                else f"for up to {self.unreachable_timeout:g} s (unreachable_timeout)",
            )
        else:
            log.debug("troth: the server at %s is still unreachable (%s)", self.url, reason)
        if bounded and self.unreachable_timeout is not None:
            left = self._down_since + self.unreachable_timeout - now
            if left <= 0:
                raise ConnectorError(
                    f"cannot reach the server at {self.url} for {now - self._down_since:.0f} s: {reason}"
                )
            delay = min(delay, left)
        await asyncio.sleep(delay)
        return min(delay * 2, 60.0)

    def _reachable(self) -> None:
        if self._down_since is not None:
            log.warning(
                "troth: reached the server at %s again after %.0f s",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def _stream(
        self, group: str, pid: str, on_message: OnMessage, opened: asyncio.Future[None]
    ) -> None:
        backoff = 1.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=None)
        tried = 0
        while not self._stopping:
            base = self.url
            url = f"{base}/poll/{quote(group, safe='')}/{quote(pid, safe='')}"
            if self.functions is not None:
                url += "?" + urlencode({"functions": ",".join(self.functions())})
            try:
                async with self._client().get(
                    url, headers={"accept": "text/event-stream"}, timeout=timeout
                ) as response:
                    if response.status != 200:
                        why = _REFUSED.get(response.status)
                        if why is not None:  # retrying cannot fix a refused token
                            raise _Refused(f"SSE connection refused with HTTP {response.status}{why}")
                        raise ConnectorError(f"SSE connection refused with HTTP {response.status}")
                    backoff = 1.0
                    self._reachable()
                    tried = 0
                    self._stream_at = (base, group, pid)
                    if self._announce_wanted:  # registered while it connected: maybe not in its URL
                        self._want_announce()
                    if not opened.done():
                        opened.set_result(None)
                    data: list[bytes] = []
                    async for raw in response.content:
                        line = raw.rstrip(b"\r\n")
                        if line.startswith(b"data:"):
                            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                        elif not line and data:
                            payload, data = b"\n".join(data), []
                            _deliver(on_message, payload)
                    raise ConnectorError("SSE stream ended")
            except (TimeoutError, aiohttp.ClientError, ConnectorError, OSError) as exc:
                self._stream_at = None
                if self._stopping:
                    return
                if isinstance(exc, _Refused | aiohttp.ClientConnectorCertificateError) and not opened.done():
                    opened.set_exception(ConnectorError(f"cannot open the SSE stream at {url}: {exc}"))
                    return
                tried += 1
                if not self._next_url(base) and (opened.done() or tried < len(self.urls)):
                    log.warning("troth: SSE stream at %s lost (%s); trying %s", base, exc, self.url)
                    continue
                try:
                    # Until the stream first opens, the bound applies (start() gives up); afterwards a
                    # worker keeps reconnecting, since giving up would leave it silently deaf.
                    backoff = await self._unreachable(exc, backoff, bounded=not opened.done())
                except ConnectorError as gave_up:
                    opened.set_exception(gave_up)
                    return

    async def request(self, request: Request[R]) -> Answer[R]:
        kind = request.kind
        corr = new_corr_id()
        body = _encode(request.envelope(self.token, corr_id=corr))
        delay = 1.0
        while True:
            base = self.url
            try:
                status, content = await self._poster().post(base, body)
            except CertificateError as exc:  # not transient: say so at once
                raise ConnectorError(f"{kind}: the certificate of {base} cannot be verified: {exc}") from None
            except ConnectorError as exc:  # an answer too large, or not HTTP: retrying cannot help
                raise ConnectorError(f"{kind}: {base}: {exc}") from None
            except (TimeoutError, OSError) as exc:
                if self._stopping:
                    raise ConnectorError(
                        f"{kind}: server unreachable at {base}: {self._reason(exc)}"
                    ) from None
                if not self._next_url(base):
                    log.warning(
                        "troth: %s: %s unreachable (%s); trying %s", kind, base, self._reason(exc), self.url
                    )
                    continue
                try:
                    delay = await self._unreachable(exc, delay)
                except ConnectorError as gave_up:
                    raise ConnectorError(f"{kind}: {gave_up}") from None
                continue
            if status == 503 and not self._stopping:
                # Unavailable for now (its database restarting, or it is shutting down): another
                # replica at once, or after a whole round the same ones with backoff. Every protocol
                # request is safe to send again.
                if not self._next_url(base):
                    continue
                try:
                    delay = await self._unreachable(ConnectorError("answered 503"), delay)
                except ConnectorError as gave_up:
                    raise ConnectorError(f"{kind}: {gave_up}") from None
                continue
            self._reachable()
            if not content or not content.lstrip().startswith(b"{"):
                raise ConnectorError(f"{kind}: server answered HTTP {status} without an envelope")
            return _check(request, corr, content)

    async def stop(self) -> None:
        self._stopping = True
        self._stream_at = None
        if self._announcing is not None:
            self._announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._announcing
            self._announcing = None
        if self._sse is not None:
            self._sse.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sse
        if self._posts is not None:
            await self._posts.close()
            self._posts = None
        if self._session is not None:
            await self._session.close()
            self._session = None
