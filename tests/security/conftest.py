"""Fixtures for the security regression tests (issue 8): each attack runs against a real ``troth serve``
process. ``debug_server`` has ``--debug`` on, so a test can compare ``debug.snap`` before and after a
refused request (a refused request must change nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers import ServerProcess


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:") as proc:
        yield proc


@pytest.fixture
def debug_server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:", args=["--debug"]) as proc:
        yield proc


def snap(server: ServerProcess) -> dict[str, Any]:
    """The whole state of a ``--debug`` server."""
    status, body = server.post("debug.snap", {})
    assert status == 200, body
    return body["data"]  # type: ignore[no-any-return]


def rss_mb(server: ServerProcess) -> float:
    """The server process's resident memory in MB (Linux ``/proc``)."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")
