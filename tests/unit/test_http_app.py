"""The ASGI app in-process (httpx's ASGI transport): readiness follows the store."""

from __future__ import annotations

import httpx

from stores import unit_store
from troth.server.engine import Engine, EngineConfig
from troth.server.http import App


async def test_ready_is_503_once_the_store_is_unusable() -> None:
    engine = Engine(unit_store(), EngineConfig())
    await engine.start()
    app = App(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        assert (await client.get("/ready")).status_code == 200
        await engine.stop()
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.content == b""
        assert (await client.get("/health")).status_code == 200
