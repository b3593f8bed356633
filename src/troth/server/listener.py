"""The HTTP listener: uvicorn's httptools protocol with the bounds it lacks, TLS, and start-up.

uvicorn with httptools parses fast but bounds nothing a slow or hostile client controls: no limit on the
size of a request's headers (llhttp accumulates them for as long as they come: a 50 MB header was
accepted), no deadline for the headers or the body to arrive (a client that sends half a request holds
the socket forever), and a TLS handshake may stall for asyncio's default 60 s. ``BoundedHttpTools`` adds,
per connection:

* **header size**: the request line and headers may take ``max_header_bytes`` (64 KiB); more → ``431``
  and the connection is closed. Bytes are counted before they reach the parser, so at most that much
  (plus one read of the current request's start, when requests are pipelined) is ever held;
* **header deadline**: from the connection's start, or from a request's first byte, the headers must be
  complete within ``header_timeout`` (10 s) → ``408`` and close;
* **body deadline**: the body must be complete ``body_timeout`` (30 s) after the headers → close;
* **idle keep-alive**: uvicorn's ``timeout_keep_alive`` (20 s; longer than aiohttp's 15 s client-side
  keep-alive, so the SDK, not the server, ends an idle connection and never races a request against a
  close);
* **TLS handshake**: 10 s.

The deadlines are armed once the bytes of a read are parsed, from what the parser's state then needs: a
request that arrives whole in one read arms none. It also writes each response in one ``send``
(``troth.server.coalesce``), where uvicorn makes two.

Every cut is counted in ``troth_refused_total{reason}`` and logged at debug level (a flood would
otherwise fill the log).

Measured before choosing (``python -m benchmarks.server --pairs 10000``: create+settle pairs over 16
keep-alive clients, the three variants interleaved over three rounds on the shared 2-core machine while
other test suites ran, so absolute figures are low and noisy): plain httptools 3,300–3,900 pairs/s, p50
2.0–2.2 ms; httptools with these bounds 2,900–3,700 pairs/s, p50 2.1–2.5 ms (within the noise: a few
attribute updates and two timer handles per request); h11 — whose ``h11_max_incomplete_event_size`` bounds the
headers, but which has no deadlines either — 1,800–2,200 pairs/s, p50 3.6–3.9 ms: 40 % slower, and it
would still need this subclass for the deadlines. Rejected too: a reverse proxy as a requirement (small
deployments have none; troth must be safe on its own), and an ASGI middleware (it only sees a request
after its headers are parsed, which is too late for both the size and the header deadline).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from troth.server.coalesce import CoalescingTransport

log = logging.getLogger("troth.http")

TLS_HANDSHAKE_TIMEOUT_S: Final = 10.0

_431: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\nconnection: close\r\n\r\nRequest header fields too large"
)
_408: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest timeout"
)


# What the parser's state asks of the deadline once a read is parsed (``_apply_deadline``): arming timers
# then, not in each callback, spares a request that arrives whole two timers and three cancellations.
_KEEP: Final = 0
_NONE: Final = 1
_HEADERS: Final = 2
_BODY: Final = 3


class Limits(msgspec.Struct, frozen=True):
    """Per-connection bounds of the HTTP listener (seconds and bytes)."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 20


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and header/body deadlines."""

    def __init__(
        self,
        *args: Any,
        limits: Limits,
        on_refused: Callable[[str], None] = lambda reason: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._on_refused = on_refused
        self._counting = True  # the bytes now arriving belong to a request's line and headers
        self._header_bytes = 0
        self._in_body = False
        self._deadline: asyncio.TimerHandle | None = None
        self._want = _KEEP  # the deadline the parser's callbacks asked for, applied after parsing
        self._out: CoalescingTransport | None = None

    # ------------------------------------------------------------------------------------------ timers

    def _arm(self, seconds: float, what: Callable[[], None]) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self._on_refused("header_timeout")
        log.debug("%s: headers not complete within %.0f s; closed", self.client, self._limits.header_timeout)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_408)
        self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self._on_refused("body_timeout")
        log.debug("%s: body not complete within %.0f s; closed", self.client, self._limits.body_timeout)
        self.transport.close()

    # ------------------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._out = self.transport = CoalescingTransport(transport, self.loop)  # one write per response
        self._arm(self._limits.header_timeout, self._header_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._parse(data)
        self._apply_deadline()

    def _parse(self, data: bytes) -> None:
        if self._counting:
            room = self._limits.max_header_bytes - self._header_bytes
            if len(data) > room:
                super().data_received(data[:room])
                self._header_bytes += room
                if self.transport.is_closing():
                    return
                if self._counting:  # the headers did not end within the limit
                    self._too_large()
                    return
                data = data[room:]
            else:
                self._header_bytes += len(data)
        super().data_received(data)

    def _apply_deadline(self) -> None:
        """Arm the deadline the parser's state asks for now that the bytes that arrived are parsed."""
        want, self._want = self._want, _KEEP
        if want == _KEEP or self.transport.is_closing():
            return
        if want == _NONE:
            self._disarm()
        elif want == _HEADERS:
            self._arm(self._limits.header_timeout, self._header_expired)
        else:
            self._arm(self._limits.body_timeout, self._body_expired)

    def _too_large(self) -> None:
        self._on_refused("header_too_large")
        log.debug("%s: request headers over %d bytes; closed", self.client, self._limits.max_header_bytes)
        self._disarm()
        self.transport.write(_431)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._counting:  # a pipelined request began while the previous one was still running
            self._counting = True
            self._header_bytes = 0
        if self._want == _NONE or (self._want == _KEEP and self._deadline is None):
            self._want = _HEADERS  # from this request's first byte (a deadline already running stays)

    def on_headers_complete(self) -> None:
        self._counting = False
        self._in_body = True
        self._want = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._want = _NONE
        self._in_body = False
        if self.cycle is not None and self.cycle.response_complete:  # answered early (a 413, a 404)
            self._counting = True
            self._header_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._out is not None:
            self._out.response_done()
        if not self._in_body:  # else the rest of the body comes first (counted from its end)
            self._counting = True
            self._header_bytes = 0
        super().on_response_complete()


# ─── TLS and start-up ───────────────────────────────────────────────────────────────────────────────────


def server_tls(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later); with ``client_ca``, clients must present a certificate
    signed by it (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def start(
    server: uvicorn.Server,
    sock: socket.socket,
    *,
    limits: Limits,
    tls: ssl.SSLContext | None = None,
    on_refused: Callable[[str], None] = lambda reason: None,
) -> None:
    """Start ``server`` on ``sock`` with ``BoundedHttpTools`` (what ``uvicorn.Server.startup`` does for a
    given socket, plus the limits and the TLS handshake deadline, which it cannot pass)."""
    config = server.config
    if not config.loaded:
        config.load()
    server.lifespan = config.lifespan_class(config)
    state = server.server_state

    def protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        return BoundedHttpTools(
            config=config,
            server_state=state,
            app_state=server.lifespan.state,
            _loop=_loop,
            limits=limits,
            on_refused=on_refused,
        )

    loop = asyncio.get_running_loop()
    listening = await loop.create_server(
        protocol,
        sock=sock,
        ssl=tls,
        backlog=2048,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if tls is not None else None,
    )
    server.servers = [listening]
    server.started = True
