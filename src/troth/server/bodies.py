"""Reading an ASGI request body with a bound: the API's ``PUT /groups/…`` and the dashboard's forms.

The body is read chunk by chunk and given up as soon as it passes the limit, so a client cannot make the
server hold more than ``limit`` bytes of it. Rejected: reading the whole body and checking its length
afterwards (the memory is spent before the check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """A request body of at most ``limit`` bytes (``None``: larger)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
