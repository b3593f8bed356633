"""``troth serve`` and ``troth dev``: run a server (docs/operations/configuration.md); every option has an
environment variable, and the docs' option table is generated from these declarations.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from troth.cli.params import DURATION

_STORE_HELP = (
    "SQLite file, :memory:, or a PostgreSQL URL (postgresql://user:password@host:5432/db; several "
    "replicas may share one database)."
)


F = TypeVar("F", bound=Callable[..., Any])


def _server_options(default_store: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        options = [
            click.option(
                "--host", default="127.0.0.1", show_default=True, envvar="TROTH_HOST", help="Bind address."
            ),
            click.option(
                "--port",
                default=8001,
                show_default=True,
                type=click.IntRange(0, 65535),
                envvar="TROTH_PORT",
                help="API port (0 picks a free one).",
            ),
            click.option(
                "--store", default=default_store, show_default=True, envvar="TROTH_STORE", help=_STORE_HELP
            ),
            click.option(
                "--pool-size",
                default=10,
                show_default=True,
                type=click.IntRange(1, 1000),
                envvar="TROTH_POOL_SIZE",
                help="PostgreSQL connections in the pool (ignored for SQLite).",
            ),
            click.option(
                "--metrics-port",
                default=0,
                show_default=True,
                type=click.IntRange(0, 65535),
                envvar="TROTH_METRICS_PORT",
                help="A separate Prometheus listener, e.g. 9090 (0: none; the API port serves /metrics).",
            ),
            click.option(
                "--strict-lineage",
                is_flag=True,
                envvar="TROTH_STRICT_LINEAGE",
                help="Apply the official server's '.'-based lineage checks.",
            ),
            click.option(
                "--debug", is_flag=True, envvar="TROTH_DEBUG", help="Enable debug.* requests and debug time."
            ),
            click.option(
                "--url", default=None, envvar="TROTH_SERVER_URL", help="URL announced in execute messages."
            ),
            click.option(
                "--retry-timeout",
                default=30_000,
                show_default=True,
                type=click.IntRange(1),
                envvar="TROTH_RETRY_TIMEOUT",
                help="ms between re-sends of a pending task's execute.",
            ),
            click.option(
                "--retention",
                default=None,
                envvar="TROTH_RETENTION",
                help="Delete settled workflow trees this long after their root settled, e.g. 30d "
                "(default: keep forever).",
                **DURATION,
            ),
            click.option(
                "--max-connections",
                default=1000,
                show_default=True,
                type=click.IntRange(1),
                envvar="TROTH_MAX_CONNECTIONS",
                help="Most SSE connections at once.",
            ),
            click.option(
                "--max-connections-per-group",
                default=1000,
                show_default=True,
                type=click.IntRange(1),
                envvar="TROTH_MAX_CONNECTIONS_PER_GROUP",
                help="Most SSE connections of one group.",
            ),
            click.option(
                "--max-connections-per-pid",
                default=16,
                show_default=True,
                type=click.IntRange(1),
                envvar="TROTH_MAX_CONNECTIONS_PER_PID",
                help="Most SSE connections of one pid (over all its groups).",
            ),
            click.option(
                "--buffer-size",
                default=100,
                show_default=True,
                type=click.IntRange(1),
                envvar="TROTH_BUFFER_SIZE",
                help="Frames buffered per SSE stream (executes past half wait; an unblock past it closes it)",
            ),
            click.option(
                "--buffer-bytes",
                default=4 * 1024 * 1024,
                show_default=True,
                type=click.IntRange(64 * 1024),
                envvar="TROTH_BUFFER_BYTES",
                help="Bytes buffered per SSE stream (executes past half wait; an unblock past it closes it)",
            ),
            click.option(
                "--push-allow",
                multiple=True,
                envvar="TROTH_PUSH_ALLOW",
                help="Where HTTP push may go: URL prefix, host, *.domain, IP or CIDR (repeat or "
                "comma-separate); '*' = public hosts (default), 'none' = no push. "
                "Loopback/private need an entry.",
            ),
            click.option(
                "--log-level",
                default="info",
                show_default=True,
                type=click.Choice(["debug", "info", "warning", "error"]),
                envvar="TROTH_LOG_LEVEL",
                help="Level of the server's log lines (stderr).",
            ),
            # ── security (docs/security.md) ──
            click.option(
                "--auth-public-key",
                multiple=True,
                type=click.Path(dir_okay=False),
                envvar="TROTH_AUTH_PUBLIC_KEY",
                help="PEM public key that verifies JWTs (RSA, EC P-256/P-384, Ed25519); repeat to rotate.",
            ),
            click.option("--auth-issuer", default=None, envvar="TROTH_AUTH_ISSUER", help="Required JWT iss."),
            click.option(
                "--auth-audience", default=None, envvar="TROTH_AUTH_AUDIENCE", help="Required JWT aud."
            ),
            click.option(
                "--auth-tokens",
                default=None,
                type=click.Path(dir_okay=False),
                envvar="TROTH_AUTH_TOKENS",
                help="File of static bearer tokens: TOKEN|sha256:HEX prefix=P [role=admin] [name=N].",
            ),
            click.option(
                "--insecure",
                is_flag=True,
                envvar="TROTH_INSECURE",
                help="Allow serving a non-loopback address without authentication.",
            ),
            click.option(
                "--metrics-host",
                default="127.0.0.1",
                show_default=True,
                envvar="TROTH_METRICS_HOST",
                help="Bind address of the metrics listener.",
            ),
            click.option("--tls-cert", default=None, envvar="TROTH_TLS_CERT", help="PEM certificate chain."),
            click.option("--tls-key", default=None, envvar="TROTH_TLS_KEY", help="PEM private key."),
            click.option(
                "--tls-client-ca",
                default=None,
                envvar="TROTH_TLS_CLIENT_CA",
                help="Require client certificates signed by this CA (mutual TLS).",
            ),
            click.option(
                "--allowed-host",
                multiple=True,
                envvar="TROTH_ALLOWED_HOSTS",
                help="Host header accepted besides loopback names (repeatable; * accepts any).",
            ),
            click.option(
                "--cors-origin",
                multiple=True,
                envvar="TROTH_CORS_ORIGINS",
                help="Origin allowed to call the API from a web page (repeatable; * allows any).",
            ),
            click.option(
                "--max-connections-per-token",
                envvar="TROTH_MAX_CONNECTIONS_PER_TOKEN",
                default=250,
                show_default=True,
                type=click.IntRange(1),
                help="SSE connections one principal may hold (with authentication).",
            ),
            click.option(
                "--max-header-bytes",
                envvar="TROTH_MAX_HEADER_BYTES",
                default=64 * 1024,
                show_default=True,
                type=click.IntRange(1024),
                help="Largest request line plus headers (431 beyond).",
            ),
            click.option(
                "--header-timeout",
                envvar="TROTH_HEADER_TIMEOUT",
                default=10.0,
                show_default=True,
                type=click.FloatRange(0.1),
                help="Seconds for a request's headers to arrive.",
            ),
            click.option(
                "--body-timeout",
                envvar="TROTH_BODY_TIMEOUT",
                default=30.0,
                show_default=True,
                type=click.FloatRange(0.1),
                help="Seconds for a request's body to arrive after its headers.",
            ),
            click.option(
                "--otel",
                is_flag=True,
                envvar="TROTH_OTEL",
                help="A span per request to OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT); needs troth[otel].",
            ),
            click.option(
                "--keep-alive-timeout",
                envvar="TROTH_KEEP_ALIVE_TIMEOUT",
                default=20,
                show_default=True,
                type=click.IntRange(1),
                help="Seconds an idle keep-alive connection stays open.",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _serve(**kwargs: object) -> None:
    from troth.server.run import ServeOptions, run

    kwargs["push_allow"] = tuple(kwargs.get("push_allow") or ())  # type: ignore[arg-type]

    sys.exit(run(ServeOptions(**kwargs)))  # type: ignore[arg-type]


@click.command()
@_server_options("troth.db")
def serve(**kwargs: object) -> None:
    """Run the server (SQLite file troth.db by default).

    \b
    Example:
      troth serve --port 8002 --store troth.db
    """
    _serve(**kwargs)


@click.command()
@_server_options(":memory:")
def dev(**kwargs: object) -> None:
    """Run the server on an in-memory store (nothing is kept).

    \b
    Example:
      troth dev --port 8002
    """
    _serve(**kwargs)


COMMANDS = [serve, dev]
