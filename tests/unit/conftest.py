"""Fixtures for the in-process server tests: an ``Engine`` on the test store (``stores``), a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from engine_harness import START, Harness
from stores import unit_store
from troth.server.clock import ManualClock
from troth.server.engine import Engine, EngineConfig


async def _harness(config: EngineConfig) -> AsyncIterator[Harness]:
    clock = ManualClock(START)
    engine = Engine(unit_store(), config, clock=clock)
    await engine.start()
    try:
        yield Harness(engine, clock)
    finally:
        await engine.stop()


@pytest_asyncio.fixture
async def h() -> AsyncIterator[Harness]:
    """The default server: debug on, relaxed lineage, retry_timeout 30 s."""
    async for harness in _harness(EngineConfig(debug=True)):
        yield harness


@pytest_asyncio.fixture
async def tiny_buffers() -> AsyncIterator[Harness]:
    """The default server with room for two unread frames per stream (``--buffer-size 2``)."""
    async for harness in _harness(EngineConfig(debug=True, buffer_size=2)):
        yield harness


@pytest_asyncio.fixture
async def strict() -> AsyncIterator[Harness]:
    """A server with the official lineage checks (``--strict-lineage``)."""
    async for harness in _harness(EngineConfig(debug=True, strict_lineage=True)):
        yield harness


@pytest_asyncio.fixture
async def nodebug() -> AsyncIterator[Harness]:
    """A server with debug off: debug kinds answer 403 and ``resonate:debug_time`` is ignored."""
    async for harness in _harness(EngineConfig(debug=False)):
        yield harness
