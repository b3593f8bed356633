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

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples._gateway import error, serve, server_timeout
from troth import InvalidIdError, ServerError, Troth

GROUP = "gateway"
TARGET = "poll://any@workers"


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


def main(argv: Sequence[str] | None = None) -> None:
    serve(
        [
            Route("/start-workflow", start_workflow, methods=["POST"]),
            Route("/resolve/{promise_id}", resolve, methods=["GET"]),
        ],
        GROUP,
        __doc__.splitlines()[0],
        argv,
    )


if __name__ == "__main__":
    main()
