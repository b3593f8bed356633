"""What the examples' HTTP gateways share: a Starlette app on uvicorn bound to 127.0.0.1, JSON errors,
one troth client for the app's lifetime, the server timeout and the startup line.

* ``serve(routes, group, description, argv)`` — parse ``--port`` (``GATEWAY_PORT``, default 5001; ``0``
  picks a free one), serve ``routes`` and print ``Gateway listening on http://127.0.0.1:<port>`` once
  connections are accepted; the troth client (group ``group``) is at ``request.app.state.troth``.
* ``error(status, message)`` — the ``{"error": "..."}`` body every gateway answers with; Starlette's own
  404/405 use it too.
* ``server_timeout()`` — how long a request waits for the troth server (``GATEWAY_SERVER_TIMEOUT_S``,
  default 10 s): the SDK retries an unreachable server forever, a gateway must answer.

Rejected: one gateway process serving both examples' routes (each example is a separate application, as
in the upstream ones), and a framework of our own on top of Starlette.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples._common import line_buffered
from troth import Troth

DEFAULT_PORT = 5001


def server_timeout() -> float:
    """How long a request waits for the troth server (the SDK retries an unreachable one forever)."""
    return float(os.environ.get("GATEWAY_SERVER_TIMEOUT_S", "10"))


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=exc.headers)


def make_app(routes: list[Route], group: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Troth(group=group) as troth:
            app.state.troth = troth
            yield

    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)


class _Server(uvicorn.Server):
    """uvicorn, printing the startup line once it accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"Gateway listening on http://127.0.0.1:{port}", flush=True)


def serve(routes: list[Route], group: str, description: str, argv: Sequence[str] | None = None) -> None:
    line_buffered()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", DEFAULT_PORT)))
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        make_app(routes, group),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    _Server(config).run()
