"""The SDK's request path on both event loops it meets: asyncio's own, and uvloop's (which uvicorn picks when
it is installed, so an app serving HTTP runs its troth client on it; uvloop's transports are not
``asyncio.Transport`` subclasses)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
