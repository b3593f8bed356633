"""The ASGI application: ``POST /``, ``GET /poll/{group}/{id}`` (SSE), ``GET /groups/{group}``, ``/health``,
``/ready``, ``/metrics``, and the dashboard under ``/ui`` (``troth.server.ui``).

A plain ASGI callable rather than a framework router: there are six routes and ``POST /`` is the hot path,
so every microsecond of routing counts. Routing-level answers follow docs/protocol/index.md#http-surface:
unknown path →
``404`` without a JSON content type, wrong method → ``405`` with ``Allow``, legacy REST routes → ``410``,
bodies over 2 MiB → ``413``.

Before routing, every request passes the browser rules of ``troth.server.browser`` (Host allow-list →
``421``, foreign ``Origin`` → ``403``, CORS preflights answered) and ``POST /`` needs a JSON content type
(``415``). With authentication on (``troth.server.auth``), ``POST /`` is authenticated by the engine and
``GET /poll`` here: no or a bad token → ``401``, a group or pid outside the token's prefix → ``403``, a
pid whose stream is open under another principal → ``409`` (a newer stream replaces an older one only for
the same principal, or an admin), and each principal holds at most ``sse_per_principal`` streams (``503``
beyond), so one leaked token cannot take every stream slot. ``/metrics`` on the API port then needs an
admin token (the metrics listener, loopback by default, does not). ``/health`` and ``/ready`` never need
one.

``GET /groups/{group}`` answers ``{"group": …, "workers": {pid: [function names] | null}}``: who holds a
stream of the group now (on every replica) and the function names each worker announced when it opened its
stream (``/poll/{group}/{id}?functions=a,b``; troth's SDK does, ``null`` when a worker did not) or later,
after registering more, with ``PUT /groups/{group}/{pid}`` ``{"functions": [names]}`` (``404`` when no
replica holds that stream; the same token rules as opening the stream). ``troth
invoke`` uses it to warn that no worker would run the call. With authentication on it needs a token whose
prefix covers the group (as a stream of the group would). Announced names are kept only up to
``MAX_ANNOUNCED`` bytes (beyond that: ``null``), so a stream cannot make the server hold more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import msgspec

from troth.protocol.limits import MAX_BODY_BYTES, MAX_ID_LENGTH
from troth.server.auth import Principal, bearer
from troth.server.bodies import ClientGone, read_body
from troth.server.browser import BrowserPolicy, is_json
from troth.server.delivery import Refused
from troth.server.engine import Engine
from troth.server.ui.routes import Ui

log = logging.getLogger("troth.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON: Final = [(b"content-type", b"application/json")]
_TEXT: Final = [(b"content-type", b"text/plain; charset=utf-8")]
MAX_ANNOUNCED: Final = 16 * 1024
"""Most bytes of function names one stream may announce (``?functions=``)."""
_SSE: Final = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_LEGACY: Final = ("/promises", "/schedules", "/tasks")
_SLICE: Final = 64 * 1024
_ROOT_HINT: Final = b"troth server: the protocol is POST / (JSON); the dashboard is at /ui\n"
_GONE: Final = b'{"error": "This endpoint is no longer supported. Please update to the latest SDK."}'


def _stream_name_problem(value: str, what: str) -> str | None:
    """Why a ``/poll`` group or id is refused (docs/operations/limits.md), or ``None``."""
    if len(value) > MAX_ID_LENGTH:
        return f"Poll {what} exceeds maximum length of {MAX_ID_LENGTH} characters"
    if not value.isprintable():
        return f"Poll {what} must not contain control characters"
    return None


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    hdrs = list(headers or [])
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class App:
    """The API server's ASGI app. ``metrics_only`` serves just ``/metrics`` (the metrics listener)."""

    def __init__(
        self,
        engine: Engine,
        *,
        metrics_only: bool = False,
        browser: BrowserPolicy | None = None,
        sse_per_principal: int = 250,
        dashboard: bool = True,
    ) -> None:
        self.engine = engine
        self.ui: Ui | None = Ui(engine) if dashboard and not metrics_only else None
        self.metrics_only = metrics_only
        self.browser = browser or BrowserPolicy()
        self.sse_per_principal = sse_per_principal
        self._streams: dict[str, int] = {}

    def _refuse(self, reason: str) -> None:
        self.engine.metrics.refused.labels(reason).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if self.metrics_only:
            if path == "/metrics":
                await self._metrics(method, send, None)
            else:
                await _respond(send, 404)
            return
        host = origin = content_type = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
        browser = self.browser
        if not browser.host_allowed(host):
            self._refuse("host")
            await _respond(
                send, 421, b"Misdirected Request: this Host is not allowed (--allowed-host)", _TEXT
            )
            return
        if origin is not None:
            if not browser.origin_allowed(origin, host):
                self._refuse("origin")
                await _respond(send, 403, b"Forbidden: this Origin is not allowed (--cors-origin)", _TEXT)
                return
            if method == "OPTIONS":
                allow = browser.preflight(origin)
                if allow is None:
                    self._refuse("origin")
                    await _respond(send, 403, b"Forbidden: this Origin is not allowed (--cors-origin)", _TEXT)
                else:
                    await _respond(send, 204, headers=allow)
                return
            cors = browser.cors_headers(origin)
            if cors:
                send = _with_headers(send, cors)
        if path == "/":
            if method != "POST":
                body = _ROOT_HINT if self.ui is not None and method == "GET" else b""
                await _respond(send, 405, body, [(b"allow", b"POST"), *_TEXT])
                return
            if not is_json(content_type):
                self._refuse("content_type")
                await _respond(send, 415, b"POST / requires Content-Type: application/json", _TEXT)
                return
            await self._rpc(scope, receive, send)
        elif path.startswith("/poll/"):
            if method != "GET":
                await _respond(send, 405, headers=[(b"allow", b"GET")])
                return
            await self._poll(scope, receive, send)
        elif path.startswith("/groups/"):
            if method == "PUT":
                if not is_json(content_type):
                    self._refuse("content_type")
                    await _respond(send, 415, b"PUT /groups/{group}/{pid} requires application/json", _TEXT)
                    return
                await self._announce(scope, receive, send)
                return
            if method not in ("GET", "HEAD"):
                await _respond(send, 405, headers=[(b"allow", b"GET, PUT")])
                return
            await self._group(scope, send)
        elif path in ("/health", "/ready", "/metrics"):
            if method not in ("GET", "HEAD"):
                await _respond(send, 405, headers=[(b"allow", b"GET")])
            elif path == "/health":
                await _respond(send, 200)
            elif path == "/ready":
                await _respond(send, 200 if await self.engine.ready() else 503)
            else:
                await self._metrics(method, send, scope)
        elif self.ui is not None and (path == "/ui" or path.startswith("/ui/")):
            await self.ui(scope, receive, send)
        elif any(path == p or path.startswith(p + "/") for p in _LEGACY):
            log.warning("legacy REST route %s %s answered 410", method, path)
            await _respond(send, 410, _GONE, _JSON)
        else:
            await _respond(send, 404)

    async def _rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > MAX_BODY_BYTES
                except ValueError:
                    too_big = False
                if too_big:
                    await _respond(send, 413, b"Payload Too Large", _TEXT)
                    return
                break
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except ClientGone:
            return
        if body is None:
            await _respond(send, 413, b"Payload Too Large", _TEXT)
            return
        token = bearer(scope["headers"]) if self.engine.auth is not None else None
        try:
            status, payload = await self.engine.handle(body, bearer=token)
        except Exception:
            log.exception("internal error")
            status, payload = (
                500,
                b'{"kind":"unknown","head":{"corrId":"0","status":500,"version":"2026-04-01"},'
                b'"data":"Internal error"}',
            )
        await _respond(send, status, payload, _JSON)

    async def _authorize(
        self, scope: Scope, send: Send, allowed: Callable[[Principal], bool]
    ) -> tuple[bool, Principal | None]:
        """With authentication on: the request's principal if ``allowed``, else ``401``/``403`` answered
        (and counted) and ``False``. With it off: ``(True, None)``."""
        auth = self.engine.auth
        if auth is None:
            return True, None
        principal = auth.authenticate(bearer(scope["headers"]))
        if principal is None:
            self._refuse("unauthorized")
            await _respond(send, 401, b"Unauthorized", _TEXT)
            return False, None
        if not allowed(principal):
            self._refuse("forbidden")
            await _respond(send, 403, b"Forbidden", _TEXT)
            return False, principal
        return True, principal

    async def _group(self, scope: Scope, send: Send) -> None:
        group = unquote(scope["path"][len("/groups/") :])
        problem = _stream_name_problem(group, "group") if group else "the group is missing"
        if problem is not None:
            await _respond(send, 400, problem.encode(), _TEXT)
            return
        ok, _ = await self._authorize(
            scope, send, lambda p: p.admin or (p.prefix is not None and group.startswith(p.prefix))
        )
        if not ok:
            return
        body = {"group": group, "workers": self.engine.delivery.workers(group)}
        await _respond(send, 200, msgspec.json.encode(body), _JSON)

    async def _announce(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``PUT /groups/{group}/{pid}`` ``{"functions": [names]}``: a worker registered functions after
        its stream opened; the stream's names are replaced (on whichever replica holds it)."""
        named = await _group_and_pid(scope, send)
        if named is None:
            return
        group, ident = named
        auth = self.engine.auth
        if auth is not None:

            def allowed(principal: Principal) -> bool:
                held = self.engine.delivery.holder(group, ident)
                theirs = held is None or held.principal is None or held.principal.name == principal.name
                return auth.may_subscribe(principal, group, ident) and (principal.admin or theirs)

            ok, _ = await self._authorize(scope, send, allowed)
            if not ok:
                return
        try:
            body = await read_body(receive, MAX_ANNOUNCED * 2)
        except ClientGone:
            return
        if body is None:
            await _respond(send, 413, b"Payload Too Large", _TEXT)
            return
        try:
            announced = msgspec.json.decode(body, type=_Announcement)
        except msgspec.ValidationError as exc:
            await _respond(send, 400, f'Expected {{"functions": [names]}}: {exc}'.encode(), _TEXT)
            return
        except msgspec.DecodeError:
            await _respond(send, 400, b"The body is not JSON", _TEXT)
            return
        names = frozenset(n for n in announced.functions if n)
        functions = names if sum(len(n.encode()) + 1 for n in names) <= MAX_ANNOUNCED else None
        where = self.engine.delivery.announce(group, ident, functions)
        if where is None:
            await _respond(send, 404, b"No open stream of this group and pid", _TEXT)
            return
        shown = sorted(functions) if functions is not None else None
        answer = {"group": group, "pid": ident, "functions": shown}
        await _respond(send, 200, msgspec.json.encode(answer), _JSON)

    async def _poll(self, scope: Scope, receive: Receive, send: Send) -> None:
        named = await _group_and_pid(scope, send)
        if named is None:
            return
        group, ident = named
        principal: Principal | None = None
        auth = self.engine.auth
        if auth is not None:
            ok, principal = await self._authorize(scope, send, lambda p: auth.may_subscribe(p, group, ident))
            if not ok or principal is None:
                return
            # the newest stream wins, but only for the stream's own principal (or an admin)
            held = self.engine.delivery.holder(group, ident)
            other = held is not None and held.principal is not None and held.principal.name != principal.name
            if other and not principal.admin:
                self._refuse("forbidden")
                await _respond(send, 409, b"Conflict: this pid's stream is held by another token", _TEXT)
                return
            if self._streams.get(principal.name, 0) >= self.sse_per_principal:
                self._refuse("sse_per_principal")
                log.warning(
                    "%s holds %d streams already; refused one more", principal.name, self.sse_per_principal
                )
                await _respond(send, 503, b"Poll registration at capacity for this token", _TEXT)
                return
        delivery = self.engine.delivery
        try:
            conn = delivery.open_stream(group, ident, principal, _announced(scope))
        except Refused as exc:
            await _respond(send, 503, str(exc).encode(), _TEXT)
            return
        if principal is not None:
            self._streams[principal.name] = self._streams.get(principal.name, 0) + 1

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            while True:
                chunks = await conn.chunks()
                if chunks is None:
                    break
                for chunk in chunks:
                    # A large frame is shared by every stream it goes to; it is written in slices so the
                    # copy the HTTP layer makes of each write stays small while a client reads slowly.
                    if len(chunk) <= _SLICE:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        conn.wrote()
                        continue
                    view = memoryview(chunk)
                    for at in range(0, len(chunk), _SLICE):
                        piece = bytes(view[at : at + _SLICE])
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                        conn.wrote()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        loop = asyncio.get_running_loop()
        writer = loop.create_task(pump())
        watcher = loop.create_task(watch())
        # A slow consumer is cut off mid-write: the response stays incomplete and the socket is closed
        # (uvicorn's complaint about the incomplete response is filtered out by ``quiet_cut_off``).

        def cut_off() -> None:
            writer.cancel()

        conn.on_abort = cut_off
        try:
            await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.on_abort = None
            for task in (writer, watcher):
                task.cancel()
            for task in (writer, watcher):
                with contextlib.suppress(asyncio.CancelledError, OSError, Exception):
                    await task
            delivery.disconnect(conn)
            if principal is not None:
                left = self._streams[principal.name] - 1
                if left:
                    self._streams[principal.name] = left
                else:
                    del self._streams[principal.name]

    async def _metrics(self, method: str, send: Send, scope: Scope | None) -> None:
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, headers=[(b"allow", b"GET")])
            return
        if scope is not None:
            ok, _ = await self._authorize(scope, send, lambda p: p.admin)
            if not ok:
                return
        body = await self.engine.scrape()
        await _respond(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])


async def _group_and_pid(scope: Scope, send: Send) -> tuple[str, str] | None:
    """The group and pid of ``/poll/{group}/{pid}`` or ``/groups/{group}/{pid}`` (the pid may contain
    ``/``), or ``None`` with ``404``/``400`` answered."""
    raw_path: bytes | None = scope.get("raw_path")
    text = raw_path.decode("latin-1") if raw_path else scope["path"]
    parts = text.split("?", 1)[0].split("/")
    # ["", "poll", group, id...]
    if len(parts) < 4 or not parts[2] or not parts[3]:
        await _respond(send, 404)
        return None
    group, ident = unquote(parts[2]), unquote("/".join(parts[3:]))
    problem = _stream_name_problem(group, "group") or _stream_name_problem(ident, "id")
    if problem is not None:
        await _respond(send, 400, problem.encode(), _TEXT)
        return None
    return group, ident


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding ``extra`` headers to the response start (the CORS headers of an allowed origin)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _CutOffFilter(logging.Filter):
    """Drops uvicorn's error line for a response we ended on purpose (a slow SSE consumer cut off)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


def quiet_cut_off() -> None:
    """Install ``_CutOffFilter`` on uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CutOffFilter) for f in logger.filters):
        logger.addFilter(_CutOffFilter())


class _Announcement(msgspec.Struct):
    functions: list[str]


def _announced(scope: Scope) -> frozenset[str] | None:
    """The function names a worker announced on its stream (``?functions=a,b``), ``None`` when it announced
    none or more than ``MAX_ANNOUNCED`` bytes of them."""
    query: bytes = scope.get("query_string") or b""
    if not query or len(query) > MAX_ANNOUNCED * 3:
        return None
    values = parse_qs(query.decode("latin-1")).get("functions")
    if not values or len(values[0]) > MAX_ANNOUNCED:
        return None
    return frozenset(name for name in values[0].split(",") if name)
