"""The async-HTTP-API gateway (Starlette on uvicorn, 127.0.0.1 only, group ``gateway``).

* ``POST /begin?id=<optional>`` with an optional JSON body (default ``{"foo":"bar"}``) starts ``foo`` on a
  worker of group ``worker`` and answers at once: ``{"promise": id, "status": "pending", "wait":
  "/wait?id=<id>"}``. Without ``id`` a UUID4 is made; an id that exists already is the same job (dedup:
  the first body wins, nothing runs twice).
* ``GET /wait?id=<id>`` never blocks: ``pending`` (``"message": "Processing in progress"``), ``resolved``
  (with ``result``) or ``rejected`` (with ``error``).

Errors are JSON ``{"error": "..."}``: 400 (missing or invalid id, malformed JSON), 404 (unknown id or
route), 405 (wrong method), 500 (``failed_to_begin: …``), 503 (the troth server did not answer within
``GATEWAY_SERVER_TIMEOUT_S``, default 10 s). Run it with
``python -m examples.async_http_api.gateway [--port 5001]`` (``GATEWAY_PORT`` also sets the port; ``0``
picks a free one). The startup line is ``Gateway listening on http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples._gateway import error, serve, server_timeout
from troth import InvalidIdError, ServerError, Troth

GROUP = "gateway"
TARGET = "poll://any@worker"
DEFAULT_DATA = {"foo": "bar"}


async def begin(request: Request) -> Response:
    raw = await request.body()
    data: Any = None
    if raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, f"the body must be JSON: {exc}")
    if data is None:
        data = dict(DEFAULT_DATA)
    id = request.query_params.get("id") or str(uuid.uuid4())
    troth: Troth = request.app.state.troth
    try:
        handle = await asyncio.wait_for(
            troth.options(target=TARGET).begin_rpc(id, "foo", data), server_timeout()
        )
    except InvalidIdError as exc:
        return error(400, str(exc))
    except TimeoutError:
        return error(
            500,
            f"failed_to_begin: the troth server did not answer within {server_timeout():g} s; the job may "
            "still start once it is back, so begin again with the same id to find out",
        )
    except Exception as exc:
        return error(500, f"failed_to_begin: {exc}")
    return JSONResponse({"promise": handle.id, "status": "pending", "wait": f"/wait?id={quote(handle.id)}"})


async def wait(request: Request) -> Response:
    id = request.query_params.get("id")
    if not id:
        return error(400, "id query parameter is required")
    troth: Troth = request.app.state.troth
    try:
        handle = await asyncio.wait_for(troth.get(id), server_timeout())
    except TimeoutError:
        return error(503, f"the troth server did not answer within {server_timeout():g} s")
    except ServerError as exc:
        if exc.code == 404:
            return error(404, f"{id} not found")
        return error(502, f"the server could not read {id}: {exc}")
    if not handle.done():
        return JSONResponse({"status": "pending", "promise_id": id, "message": "Processing in progress"})
    try:
        result = await handle.result()
    except Exception as exc:
        return JSONResponse({"status": "rejected", "promise_id": id, "error": str(exc)})
    return JSONResponse({"status": "resolved", "promise_id": id, "result": result})


def main(argv: Sequence[str] | None = None) -> None:
    serve(
        [Route("/begin", begin, methods=["POST"]), Route("/wait", wait, methods=["GET"])],
        GROUP,
        __doc__.splitlines()[0],
        argv,
    )


if __name__ == "__main__":
    main()
