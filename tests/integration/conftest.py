"""Fixtures for the integration tests: a fresh ``troth serve`` process per test (it starts in well under
a second), on an empty test store (``stores``: in-memory SQLite, or a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import ServerProcess
from stores import server_store


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(server_store()) as proc:
        yield proc
