"""Client CPU per ``POST /``: the SDK's request path (``troth.sdk.posts``) against aiohttp.

Starts a real ``troth serve`` on a fresh SQLite file and sends ``--requests`` sequential ``promise.get``
envelopes (the cheapest request for the server; prepared beforehand, so only the HTTP client is
measured) through each client in turn, ``--rounds`` times interleaved, and prints this process's CPU time
(``time.process_time``) per request:

* ``aiohttp``: ``ClientSession.post`` and ``read``, as ``HttpTransport`` used it before issue 12;
* ``aiohttp-lean``: aiohttp driven as cheaply as its public options allow (a pre-parsed ``yarl.URL``, no
  automatic headers, no decompression, no context manager);
* ``posts``: ``troth.sdk.posts.Posts``, what ``HttpTransport`` uses now.

    python -m benchmarks.client_request
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import yarl

from benchmarks.server import start_server
from troth.protocol.messages import promise_get
from troth.sdk.posts import Posts

Send = Callable[[bytes], Awaitable[tuple[int, bytes]]]


async def _aiohttp(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        headers={"content-type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=10),
        connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300, ssl=True),
    )

    async def send(body: bytes) -> tuple[int, bytes]:
        async with session.post(url + "/", data=body) as response:
            return response.status, await response.read()

    return send, session.close


async def _aiohttp_lean(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        connector=aiohttp.TCPConnector(limit=64, ssl=True),
        auto_decompress=False,
    )
    target = yarl.URL(url + "/")
    headers = {"content-type": "application/json"}

    async def send(body: bytes) -> tuple[int, bytes]:
        response = await session.post(target, data=body, headers=headers)
        content = await response.read()
        response.release()
        return response.status, content

    return send, session.close


async def _posts(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    posts = Posts(token=None, tls=True, timeout=10)

    async def send(body: bytes) -> tuple[int, bytes]:
        return await posts.post(url, body)

    return send, posts.close


CLIENTS = {"aiohttp": _aiohttp, "aiohttp-lean": _aiohttp_lean, "posts": _posts}


async def measure(client: str, url: str, requests: int) -> float:
    """Microseconds of this process's CPU per request."""
    send, close = await CLIENTS[client](url)
    ids = [f"bench-{uuid.uuid4().hex}" for _ in range(requests)]
    bodies = [msgspec.json.encode(promise_get(id).envelope()) for id in ids]
    try:
        for body in bodies[:200]:  # connections open, caches warm
            status, _ = await send(body)
            assert status == 404, status  # no such promise: the answer is still an envelope
        started = time.process_time()
        for body in bodies:
            await send(body)
        return (time.process_time() - started) / requests * 1e6
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    proc, port = start_server(str(tmp / "bench.db"), log=tmp / "server.log")
    figures: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        for _ in range(args.rounds):
            for name in CLIENTS:
                figures[name].append(asyncio.run(measure(name, f"http://127.0.0.1:{port}", args.requests)))
    finally:
        proc.terminate()
        proc.wait()
    for name, values in figures.items():
        print(f"{name:13} {' '.join(f'{v:6.1f}' for v in values)}  µs of client CPU per request")


if __name__ == "__main__":
    main()
