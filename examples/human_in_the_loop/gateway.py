"""The human-in-the-loop HTTP gateway (Starlette on uvicorn, 127.0.0.1 only, group ``gateway``).

* ``POST /start-workflow`` with ``{"workflow_id": "..."}`` starts ``foo`` on a worker of group ``workers``
  (or reconnects to the execution already running under that id) and answers when it finishes:
  ``{"message": "workflow <id> completed"}``.
* ``GET /resolve/{promise_id}`` is the link a person clicks: it resolves the latent promise with ``true``
  and answers ``{"message": "promise resolved"}``. An unknown id is ``404``, an already settled promise
  ``409`` (the server itself accepts a repeated settle, so the gateway checks the state first).

Every error is a JSON body ``{"error": "..."}`` with the matching status (400 bad body, 404 unknown route
or promise, 405 wrong method, 409 settled, 500 workflow failed, 503 the troth server did not answer within
``GATEWAY_SERVER_TIMEOUT_S``, default 10 s). Run it with
``python -m examples.human_in_the_loop.gateway [--port 5001]`` (``GATEWAY_PORT`` also sets the port; ``0``
picks a free one). The startup line is ``Gateway listening on http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples._common import line_buffered
from troth import InvalidIdError, ServerError, Troth

GROUP = "gateway"
TARGET = "poll://any@workers"
DEFAULT_PORT = 5001


def server_timeout() -> float:
    """How long a request waits for the troth server (the SDK retries an unreachable one forever)."""
    return float(os.environ.get("GATEWAY_SERVER_TIMEOUT_S", "10"))


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def start_workflow(request: Request) -> Response:
    try:
        body: Any = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        return error(400, f'the body must be JSON like {{"workflow_id": "..."}}: {exc}')
    workflow_id = body.get("workflow_id") if isinstance(body, dict) else None
    if not isinstance(workflow_id, str) or not workflow_id:
        return error(400, "workflow_id is required (a non-empty string)")
    troth: Troth = request.app.state.troth
    try:
        handle = troth.options(target=TARGET).rpc(workflow_id, "foo", workflow_id)
        await asyncio.wait_for(handle.created(), server_timeout())
    except InvalidIdError as exc:
        return error(400, str(exc))
    except TimeoutError:
        return error(
            503,
            f"the troth server did not answer within {server_timeout():g} s; workflow {workflow_id} may "
            "still start once it is back, so ask again with the same id",
        )
    except Exception as exc:
        return error(500, f"failed to start workflow {workflow_id}: {exc}")
    try:
        result = await handle.result()
    except Exception as exc:
        return error(500, f"workflow {workflow_id} failed: {exc}")
    return JSONResponse({"message": result})


async def resolve(request: Request) -> Response:
    promise_id = request.path_params["promise_id"]
    troth: Troth = request.app.state.troth
    try:
        record = await asyncio.wait_for(troth.promises.get(promise_id), server_timeout())
    except TimeoutError:
        return error(503, f"the troth server did not answer within {server_timeout():g} s")
    except ServerError as exc:
        if exc.code == 404:
            return error(404, f"promise {promise_id} not found")
        return error(502, f"the server could not read promise {promise_id}: {exc}")
    if record.get("tags", {}).get("resonate:external") != "true":
        return error(404, f"{promise_id} is not a promise waiting for a person")
    if record["state"] != "pending":
        return error(409, f"promise {promise_id} is already {record['state']}")
    try:
        await asyncio.wait_for(troth.promises.resolve(promise_id, True), server_timeout())
    except TimeoutError:
        return error(503, f"the troth server did not answer within {server_timeout():g} s")
    except ServerError as exc:
        return error(502, f"the server could not resolve promise {promise_id}: {exc}")
    return JSONResponse({"message": "promise resolved"})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=exc.headers)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with Troth(group=GROUP) as troth:
        app.state.troth = troth
        yield


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/start-workflow", start_workflow, methods=["POST"]),
            Route("/resolve/{promise_id}", resolve, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


class _Server(uvicorn.Server):
    """uvicorn, printing the startup line once it accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"Gateway listening on http://127.0.0.1:{port}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    line_buffered()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", DEFAULT_PORT)))
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        make_app(), host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=3
    )
    _Server(config).run()


if __name__ == "__main__":
    main()
