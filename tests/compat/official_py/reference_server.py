"""A stand-in Resonate server built from the official SDK's own in-process state machine (Python 3.12).

This file owns the *control* for the official-SDK compatibility test. ``resonate-sdk`` 0.8.1 ships
``resonate.connections.local.ServerState``, the simulation its ``LocalConnection`` runs in-process.
Exposed over HTTP (``POST /``) and SSE (``GET /poll/{group}/{pid}``) with aiohttp, it lets the scenarios
in ``scenarios.py`` run across real processes when no troth server is available, and it is the yardstick
when a scenario fails against troth: a scenario that passes here and fails there points at troth.

It is deliberately small and is not a second server implementation: no persistence, one lock, a tick
every ``--tick`` seconds (timeouts and lease expiries), anycast picks the first live connection of a
group, and an anycast message for a group with no connection waits for the next member to connect (a
unicast one is dropped). ``--log FILE`` appends every request, response and pushed message as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import msgspec
from aiohttp import web
from resonate.connections.local import (
    OutgoingMessage,
    ServerState,
    unwrap_request_envelope,
    wrap_response_envelope,
)
from resonate.error import ServerError
from resonate_base import PROTOCOL_VERSION


def now_ms() -> int:
    return int(time.time() * 1000)


class Hub:
    """The state machine, the open SSE streams by group, and the optional traffic log."""

    def __init__(self, log_path: str | None) -> None:
        self.state = ServerState()
        self.lock = asyncio.Lock()
        self.streams: dict[str, dict[str, asyncio.Queue[str]]] = {}
        #: anycast messages that found no member of their group, sent to the next one to connect
        self.backlog: dict[str, list[str]] = {}
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115

    def record(self, event: str, body: Any) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"t": now_ms(), "event": event, "body": body}) + "\n")
            self.log.flush()

    def deliver(self, messages: list[OutgoingMessage]) -> None:
        for msg in messages:
            payload = dict(msg.message)
            payload.setdefault("head", {"version": PROTOCOL_VERSION})
            queue = self.route(msg.address)
            self.record("push", {"address": msg.address, "delivered": queue is not None, "msg": payload})
            if queue is not None:
                queue.put_nowait(json.dumps(payload))
            elif msg.address.startswith("poll://any@"):
                self.backlog.setdefault(self.group_of(msg.address), []).append(json.dumps(payload))

    @staticmethod
    def group_of(address: str) -> str:
        return address.partition("@")[2].partition("/")[0]

    def route(self, address: str) -> asyncio.Queue[str] | None:
        if not address.startswith("poll://"):
            return None
        mode, _, rest = address[len("poll://") :].partition("@")
        group, _, pid = rest.partition("/")
        members = self.streams.get(group, {})
        if pid and pid in members:
            return members[pid]
        if mode == "any" and members:
            return next(iter(members.values()))
        return None

    def redeliver(self, group: str, data: str) -> None:
        queue = self.route(f"poll://any@{group}")
        self.record("redeliver", {"group": group, "delivered": queue is not None, "msg": json.loads(data)})
        if queue is not None:
            queue.put_nowait(data)
        else:
            self.backlog.setdefault(group, []).append(data)

    async def apply(self, body: bytes) -> dict[str, Any]:
        try:
            flat = unwrap_request_envelope(json.loads(body))
        except ValueError as exc:
            return {"kind": "error", "head": {"status": 400, "version": PROTOCOL_VERSION}, "data": str(exc)}
        async with self.lock:
            try:
                response = wrap_response_envelope(self.state.apply(now_ms(), flat))
            except ServerError as exc:
                response = {
                    "kind": flat.get("kind", "error"),
                    "head": {"corrId": flat.get("corrId"), "status": exc.code, "version": PROTOCOL_VERSION},
                    "data": str(exc),
                }
            outgoing, self.state.outgoing = self.state.outgoing, []
        self.deliver(outgoing)
        return response

    async def tick_forever(self, interval: float) -> None:
        while True:
            async with self.lock:
                self.state.outgoing.clear()
                self.state.tick(now_ms())
                outgoing, self.state.outgoing = self.state.outgoing, []
            self.deliver(outgoing)
            await asyncio.sleep(interval)


async def handle_post(request: web.Request) -> web.Response:
    hub: Hub = request.app["hub"]
    body = await request.read()
    response = await hub.apply(body)
    hub.record("request", {"req": json.loads(body or b"null"), "res": response})
    status = int(response["head"].get("status", 200))
    text = msgspec.json.encode(response).decode()
    return web.Response(status=status, text=text, content_type="application/json")


async def handle_poll(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app["hub"]
    group, pid = request.match_info["group"], request.match_info["pid"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    hub.streams.setdefault(group, {})[pid] = queue
    hub.record("connect", {"group": group, "pid": pid})
    for data in hub.backlog.pop(group, []):
        queue.put_nowait(data)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    data: str | None = None
    try:
        while True:
            data = await queue.get()
            await response.write(f"data: {data}\n\n".encode())
            data = None
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if hub.streams.get(group, {}).get(pid) is queue:
            del hub.streams[group][pid]
        hub.record("disconnect", {"group": group, "pid": pid})
        # Whatever this dead stream had not written yet goes to another member of the group.
        pending = [data] if data is not None else []
        while not queue.empty():
            pending.append(queue.get_nowait())
        for item in pending:
            hub.redeliver(group, item)
    return response


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int, tick: float, log_path: str | None) -> None:
    hub = Hub(log_path)
    app = web.Application()
    app["hub"] = hub
    app.router.add_post("/", handle_post)
    app.router.add_get("/poll/{group}/{pid}", handle_poll)
    app.router.add_get("/health", handle_health)
    runner = web.AppRunner(app, handler_cancellation=True)  # notice dropped SSE clients at once
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"READY {json.dumps({'url': f'http://{host}:{port}'})}", flush=True)
    ticker = asyncio.create_task(hub.tick_forever(tick))
    try:
        await asyncio.Event().wait()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between timeout sweeps")
    parser.add_argument("--log", default=None, help="append the traffic as JSON lines to this file")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.tick, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
