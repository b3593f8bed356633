"""Fixtures for the security regression tests (issue 8): each attack runs against a real ``troth serve``
process. ``debug_server`` has ``--debug`` on, so a test can compare ``debug.snap`` before and after a
refused request (a refused request must change nothing). For authentication: key pairs and tokens made
in the test (``authkit``), and ``auth_server`` (``--auth-public-key`` with an audience, ``--debug``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from authkit import Keys
from helpers import ServerProcess, envelope

AUDIENCE = "troth-tests"


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A fresh server on loopback without authentication (the default a developer runs)."""
    with ServerProcess(":memory:") as proc:
        yield proc


@pytest.fixture
def debug_server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:", args=["--debug"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys.generate(tmp_path_factory.mktemp("keys"), "ed25519")


@pytest.fixture(scope="module")
def admin(keys: Keys) -> str:
    return keys.token(admin=True, aud=AUDIENCE, sub="admin-user")


@pytest.fixture(scope="module")
def auth_server(keys: Keys) -> Iterator[ServerProcess]:
    """One server for the module: JWT auth with an audience, debug kinds on."""
    args = ["--auth-public-key", str(keys.public_path), "--auth-audience", AUDIENCE, "--debug"]
    with ServerProcess(":memory:", args=args) as server:
        yield server


def call(
    server: ServerProcess,
    kind: str,
    data: Mapping[str, Any],
    token: str | None = None,
    *,
    in_head: bool = True,
    in_header: bool = True,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """``POST /`` with ``token`` in ``head.auth`` and/or ``Authorization: Bearer`` (as the SDKs send it)."""
    head = {"auth": token} if token is not None and in_head else None
    sent = dict(headers or {})
    if token is not None and in_header:
        sent["authorization"] = f"Bearer {token}"
    response = server.client.post("/", json=envelope(kind, dict(data), head), headers=sent)
    body = response.json()
    assert body["head"]["status"] == response.status_code, body
    return response.status_code, body


def snap(server: ServerProcess, token: str | None = None) -> dict[str, Any]:
    """The whole state of a ``--debug`` server (read with ``token`` when authentication is on)."""
    status, body = call(server, "debug.snap", {}, token)
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


def poll_status(server: ServerProcess, group: str, pid: str, token: str | None) -> int:
    """The status ``GET /poll/{group}/{pid}`` answers (a 200 stream is closed at once)."""
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    with (
        httpx.Client(timeout=10.0) as client,
        client.stream("GET", f"{server.url}/poll/{group}/{pid}", headers=headers) as response,
    ):
        return response.status_code


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
