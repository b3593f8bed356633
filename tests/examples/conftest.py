"""Fixtures for the examples' acceptance tests: a fresh server per test, the example processes it starts,
and an effects file; everything started is stopped by PID at the end (docs/examples/index.md#conventions)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from examples._common import EmbeddedServer, Processes
from troth.protocol.messages import parse_reply, request_envelope

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A ``troth serve`` on a free port with its own SQLite file."""
    embedded = EmbeddedServer(store=str(tmp_path / "troth.db")).start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def effects_file(tmp_path: Path) -> Path:
    return tmp_path / "effects.jsonl"


@pytest.fixture
def procs(server: EmbeddedServer, effects_file: Path) -> Iterator[Processes]:
    """Example roles pointed at ``server``, with a short lease (crash scenarios) and the effects file."""
    with Processes(server.url, env={"TROTH_TTL_MS": "3000", "EXAMPLE_EFFECTS_FILE": str(effects_file)}) as p:
        yield p


def protocol(url: str, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
    """One raw protocol request; returns ``head.status`` and ``data``."""
    body = request_envelope(kind, data)
    reply = httpx.post(
        url + "/",
        content=msgspec.json.encode(body),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    return parse_reply(kind, body["head"]["corrId"], reply.content)


def cli(url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``troth <args>`` against ``url`` as a user would."""
    env = {**os.environ, "TROTH_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "troth.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
