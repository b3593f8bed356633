"""Fixtures for the integration tests: a fresh ``troth serve`` process per test (it starts in well under
a second), on an in-memory store unless the test builds its own ``ServerProcess``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import ServerProcess


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:") as proc:
        yield proc
