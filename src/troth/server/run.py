"""Running a server process: open the store, bind the listeners, serve until SIGTERM/SIGINT, drain.

Shutdown order: stop accepting, end every SSE stream (so workers reconnect elsewhere at once), let
in-flight requests finish, stop the timers, close the store. Every acknowledged write is already
committed (``synchronous=FULL``), so a SIGKILL at any point loses nothing that was answered.

Safe by default: a server bound to anything but a loopback address refuses to start without
authentication (a public key, a token file, or client certificates) unless ``--insecure`` says so, and
the metrics listener binds loopback unless ``--metrics-host`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import uvicorn

from troth.server import listener
from troth.server.auth import Auth, AuthConfigError, JwtVerifier, StaticTokens
from troth.server.browser import BrowserPolicy, is_loopback
from troth.server.engine import Engine, EngineConfig
from troth.server.http import App, quiet_cut_off
from troth.server.store import is_postgres_url, open_store, redact
from troth.server.store.base import StoreError

log = logging.getLogger("troth")


class ServeOptions(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8001
    store: str = "troth.db"
    pool_size: int = 10
    metrics_port: int = 0
    strict_lineage: bool = False
    debug: bool = False
    url: str | None = None
    retry_timeout: int = 30_000
    retention: int | None = None
    max_connections: int = 1000
    max_connections_per_group: int = 1000
    max_connections_per_pid: int = 16
    buffer_size: int = 100
    buffer_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    push_allow: tuple[str, ...] = ()
    auth_public_key: tuple[str, ...] = ()
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_tokens: str | None = None
    insecure: bool = False
    metrics_host: str = "127.0.0.1"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    allowed_host: tuple[str, ...] = ()
    cors_origin: tuple[str, ...] = ()
    max_connections_per_token: int = 250
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 20
    otel: bool = False


class StartupError(Exception):
    """The server cannot start; the message is one line for the user."""


def _bind(host: str, port: int, flag: str = "--port") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = f" (another process listens there; choose another port with {flag} N)"
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn(app: Any, level: str, keep_alive: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="httptools",
        loop="none",
        log_level=level,
        access_log=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=keep_alive,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # no proxy middleware on the hot path: we never read forwarded headers
    )
    return uvicorn.Server(config)


def build_auth(options: ServeOptions) -> Auth | None:
    """The request authentication the options ask for (``None``: none); ``StartupError`` when a key or
    token file cannot be used."""
    if not options.auth_public_key and options.auth_tokens is None:
        if options.auth_issuer or options.auth_audience:
            raise StartupError("--auth-issuer and --auth-audience need --auth-public-key")
        return None
    try:
        verifier = (
            JwtVerifier.from_files(
                options.auth_public_key, issuer=options.auth_issuer, audience=options.auth_audience
            )
            if options.auth_public_key
            else None
        )
        if verifier is None and (options.auth_issuer or options.auth_audience):
            raise StartupError("--auth-issuer and --auth-audience need --auth-public-key")
        static = StaticTokens.from_file(options.auth_tokens) if options.auth_tokens is not None else None
        return Auth(verifier, static)
    except AuthConfigError as exc:
        raise StartupError(str(exc)) from None


def build_tls(options: ServeOptions) -> ssl.SSLContext | None:
    if options.tls_cert is None and options.tls_key is None:
        if options.tls_client_ca is not None:
            raise StartupError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if options.tls_cert is None or options.tls_key is None:
        raise StartupError("TLS needs both --tls-cert and --tls-key")
    try:
        return listener.server_tls(options.tls_cert, options.tls_key, options.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot use the TLS certificate or key: {exc}") from None


def check_exposure(options: ServeOptions, auth: Auth | None) -> None:
    """Refuse to serve an unauthenticated API on a non-loopback address, unless ``--insecure``."""
    if is_loopback(options.host) or options.insecure:
        return
    if auth is None and options.tls_client_ca is None:
        raise StartupError(
            f"refusing to serve {options.host} without authentication: give --auth-public-key, "
            "--auth-tokens or --tls-client-ca (or --insecure to expose an open server)"
        )


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: raise the soft limit to the hard one (hostile clients are
    cut off by the listener's deadlines, but until then they must not exhaust descriptors)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


async def serve(options: ServeOptions, ready: asyncio.Event | None = None) -> None:
    auth = build_auth(options)
    tls = build_tls(options)
    check_exposure(options, auth)
    provider: Any = None
    if options.otel:
        try:
            from troth.server.tracing import exporter_provider

            provider = exporter_provider()
        except ImportError:
            raise StartupError("--otel needs OpenTelemetry: pip install 'troth[otel]'") from None
    if options.insecure and not is_loopback(options.host) and auth is None:
        log.warning(
            "serving %s without authentication (--insecure): anyone who can reach it has control",
            options.host,
        )
    _raise_file_limit()
    api_sock = _bind(options.host, options.port)
    metrics_sock = None
    if options.metrics_port:
        try:
            metrics_sock = _bind(options.metrics_host, options.metrics_port, "--metrics-port")
        except StartupError:
            api_sock.close()
            raise
    port = api_sock.getsockname()[1]
    scheme = "https" if tls is not None else "http"
    config = EngineConfig(
        server_url=options.url or f"{scheme}://{_url_host(options.host)}:{port}",
        retry_timeout=options.retry_timeout,
        retention=options.retention,
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
        store = open_store(options.store, pool_size=options.pool_size)
        engine = Engine(store, config, auth=auth)
    except ValueError as exc:  # a --push-allow entry it cannot read
        api_sock.close()
        if metrics_sock is not None:
            metrics_sock.close()
        raise StartupError(str(exc)) from None
    if is_postgres_url(options.store):  # replicas may share the database: join them
        from troth.server.cluster import Cluster
        from troth.server.store.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        engine.cluster = Cluster(engine, store)
    try:
        await engine.start()
    except StoreError as exc:
        raise StartupError(str(exc)) from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    shown_store = redact(options.store)
    level = "warning" if options.log_level == "info" else options.log_level
    browser = BrowserPolicy.build(
        bind=options.host, allowed_hosts=options.allowed_host, cors_origins=options.cors_origin
    )
    api = App(engine, browser=browser, sse_per_principal=options.max_connections_per_token)
    limits = listener.Limits(
        max_header_bytes=options.max_header_bytes,
        header_timeout=options.header_timeout,
        body_timeout=options.body_timeout,
        keep_alive_timeout=options.keep_alive_timeout,
    )
    for name, value in (
        ("max_header_bytes", limits.max_header_bytes),
        ("header_timeout_seconds", limits.header_timeout),
        ("body_timeout_seconds", limits.body_timeout),
        ("keep_alive_seconds", limits.keep_alive_timeout),
        ("sse_connections_per_principal", options.max_connections_per_token),
    ):
        engine.metrics.limits.labels(name).set(value)
    refused = engine.metrics.refused

    def count(reason: str) -> None:
        refused.labels(reason).inc()

    served: Any = api
    if provider is not None:
        from troth.server.tracing import Traced

        served = Traced(api, provider)
    servers = [(_uvicorn(served, level, limits.keep_alive_timeout), api_sock, tls)]
    if metrics_sock is not None:
        metrics_app = App(engine, metrics_only=True)
        servers.append((_uvicorn(metrics_app, level, limits.keep_alive_timeout), metrics_sock, None))
    quiet_cut_off()
    for server, sock, context in servers:
        await listener.start(server, sock, limits=limits, tls=context, on_refused=count)
    log.info(
        "troth serving on %s://%s:%d (store %s%s%s%s)",
        scheme,
        options.host,
        port,
        shown_store,
        f", metrics on {options.metrics_host}:{metrics_sock.getsockname()[1]}" if metrics_sock else "",
        ", strict lineage" if options.strict_lineage else "",
        ", authentication on" if auth is not None else "",
    )
    print(
        f"troth: listening on {scheme}://{_url_host(options.host)}:{port} (store {shown_store})",
        file=sys.stderr,
        flush=True,
    )
    if ready is not None:
        ready.set()
    ticks = [loop.create_task(server.main_loop()) for server, _, _ in servers]
    await stop.wait()
    log.info("shutting down")
    engine.delivery.close_all()
    for server, _, _ in servers:
        server.should_exit = True
    for t in ticks:
        with contextlib.suppress(Exception):
            await t
    for server, sock, _ in servers:
        await server.shutdown(sockets=[sock])
    await engine.stop()
    if provider is not None:
        provider.shutdown()  # flushes the spans not exported yet
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
