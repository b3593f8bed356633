"""Reading an ASGI request body with a bound: the API's ``POST /`` and ``PUT /groups/…``, the dashboard's
forms.

The body is read chunk by chunk and given up as soon as it passes the limit, so a client cannot make the
server hold more than ``limit`` bytes of it; a client that disconnects before its body is complete is
``ClientGone``, so a cut-off request is never acted on. Rejected: reading the whole body and checking its
length afterwards (the memory is spent before the check); returning what arrived before a disconnect (a
dashboard form cut short would resolve a promise with half its value).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before its request body was complete: nothing to do, nobody to answer."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """A request body of at most ``limit`` bytes (``None``: larger)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
