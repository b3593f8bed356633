"""A minimal keep-alive HTTP/1.1 client for load generation, so the client's CPU cost stays small.

A benchmark on a 2-core machine shares the CPU between the server and the load generator; a general
client library (httpx, aiohttp) costs several times more per request than the server under test, which
would measure the client. This one writes a pre-built request and reads a ``Content-Length`` response.
"""

from __future__ import annotations

import asyncio
import contextlib


class Conn:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, token: str | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host
        self.extra = f"Authorization: Bearer {token}\r\n" if token else ""

    @classmethod
    async def open(cls, host: str, port: int, token: str | None = None) -> Conn:
        """A keep-alive connection; with ``token``, every request carries ``Authorization: Bearer``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}", token)

    async def post(self, body: bytes, path: str = "/") -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
