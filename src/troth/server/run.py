"""Running a server process: open the store, bind the listeners, serve until SIGTERM/SIGINT, drain.

Shutdown order: stop accepting, end every SSE stream (so workers reconnect elsewhere at once), let
in-flight requests finish, stop the timers, close the store. Every acknowledged write is already
committed (``synchronous=FULL``), so a SIGKILL at any point loses nothing that was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable

import msgspec
import uvicorn

from troth.server.engine import Engine, EngineConfig
from troth.server.http import App, quiet_cut_off
from troth.server.store.base import Store, StoreError
from troth.server.store.sqlite import SqliteStore

log = logging.getLogger("troth")


class ServeOptions(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8001
    store: str = "troth.db"
    metrics_port: int = 9090
    strict_lineage: bool = False
    debug: bool = False
    url: str | None = None
    retry_timeout: int = 30_000
    max_connections: int = 1000
    max_connections_per_group: int = 1000
    max_connections_per_pid: int = 16
    buffer_size: int = 100
    buffer_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    push_allow: tuple[str, ...] = ()


class StartupError(Exception):
    """The server cannot start; the message is one line for the user."""


def open_store(spec: str) -> Store:
    if spec.startswith(("postgres://", "postgresql://")):
        raise StartupError(
            "the PostgreSQL store is not available in this release; use a SQLite file or :memory:"
        )
    return SqliteStore(spec)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn(app: App, level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="httptools",
        loop="none",
        log_level=level,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # no proxy middleware on the hot path: we never read forwarded headers
    )
    return uvicorn.Server(config)


async def serve(options: ServeOptions, ready: asyncio.Event | None = None) -> None:
    api_sock = _bind(options.host, options.port)
    metrics_sock = None
    if options.metrics_port:
        try:
            metrics_sock = _bind(options.host, options.metrics_port)
        except StartupError:
            api_sock.close()
            raise
    port = api_sock.getsockname()[1]
    config = EngineConfig(
        server_url=options.url or f"http://{options.host}:{port}",
        retry_timeout=options.retry_timeout,
        strict_lineage=options.strict_lineage,
        debug=options.debug,
        buffer_size=options.buffer_size,
        buffer_bytes=options.buffer_bytes,
        max_connections=options.max_connections,
        max_connections_per_group=options.max_connections_per_group,
        max_connections_per_pid=options.max_connections_per_pid,
        push_allow=tuple(e for entry in options.push_allow for e in entry.split(",") if e.strip()),
    )
    try:
        engine = Engine(open_store(options.store), config)
    except ValueError as exc:  # a --push-allow entry it cannot read
        api_sock.close()
        if metrics_sock is not None:
            metrics_sock.close()
        raise StartupError(str(exc)) from None
    try:
        await engine.start()
    except StoreError as exc:
        raise StartupError(str(exc)) from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    level = "warning" if options.log_level == "info" else options.log_level
    servers = [(_uvicorn(App(engine), level), api_sock)]
    if metrics_sock is not None:
        servers.append((_uvicorn(App(engine, metrics_only=True), level), metrics_sock))
    quiet_cut_off()
    for server, sock in servers:
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        await server.startup(sockets=[sock])
    log.info(
        "troth serving on http://%s:%d (store %s%s%s)",
        options.host,
        port,
        options.store,
        f", metrics on :{metrics_sock.getsockname()[1]}" if metrics_sock else "",
        ", strict lineage" if options.strict_lineage else "",
    )
    print(
        f"troth: listening on http://{options.host}:{port} (store {options.store})",
        file=sys.stderr,
        flush=True,
    )
    if ready is not None:
        ready.set()
    ticks = [loop.create_task(server.main_loop()) for server, _ in servers]
    await stop.wait()
    log.info("shutting down")
    engine.delivery.close_all()
    for server, _ in servers:
        server.should_exit = True
    for t in ticks:
        with contextlib.suppress(Exception):
            await t
    for server, sock in servers:
        await server.shutdown(sockets=[sock])
    await engine.stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


def run(options: ServeOptions) -> int:
    """Run the server until a signal; returns the process exit code."""
    logging.basicConfig(
        level=getattr(logging, options.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(options))
    except StartupError as exc:
        print(f"troth: {exc}", file=sys.stderr)
        return 1
    return 0
