"""Fixtures for the SDK behaviour suite (docs/sdk/behaviours.md): every test runs in local mode (the server
engine in-process) and in remote mode (``Troth(url)`` against one real ``troth serve`` process on the test
store — a temporary SQLite file or a PostgreSQL database, see ``stores`` — started once for the session).
Local mode is the SDK's embedded SQLite engine whatever the test store.

``env.client(...)`` builds a ``Troth`` whose transport is wrapped in a ``Recording`` (see ``support``), starts
nothing by itself, and stops every client at the end of the test. Ids and group names are unique per test,
so tests sharing the remote server cannot see each other's work.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from helpers import ServerProcess
from sdk.support import Recording, WorkerProcess
from stores import server_store
from troth import Troth
from troth.sdk.transport import HttpTransport, LocalTransport

_serial = itertools.count(1)


@pytest.fixture(scope="session")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    store = tmp_path_factory.mktemp("sdk-server") / "troth.db"
    with ServerProcess(server_store(store)) as server:
        yield server


class Env:
    def __init__(self, mode: str, server: ServerProcess | None, tmp: Path) -> None:
        self.mode = mode
        self.server = server
        self.tmp = tmp
        self.tag = f"t{next(_serial)}{uuid.uuid4().hex[:6]}"
        self.group = f"g-{self.tag}"
        self.clients: list[Troth] = []
        self.workers: list[WorkerProcess] = []
        self._ids = itertools.count(1)

    @property
    def remote(self) -> bool:
        return self.mode == "remote"

    @property
    def url(self) -> str:
        assert self.server is not None, "remote mode only"
        return self.server.url

    def id(self, name: str) -> str:
        """A root id unique to this test run."""
        return f"{name}-{self.tag}-{next(self._ids)}"

    def client(self, *, group: str | None = None, **kwargs: Any) -> tuple[Troth, Recording]:
        """A ``Troth`` in this test's mode, with its traffic recorded."""
        if self.remote:
            rec = Recording(HttpTransport(self.url))
            r = Troth(self.url, group=group or self.group, transport=rec, **kwargs)
        else:
            rec = Recording(LocalTransport())
            r = Troth(group=group or self.group, transport=rec, **kwargs)
        self.clients.append(r)
        return r, rec

    def worker(
        self, pid: str, *, group: str | None = None, ttl: float = 2.0, pickle_key: str | None = None
    ) -> WorkerProcess:
        """A worker process (remote mode) serving ``sdk.workers`` in ``group`` (default: this test's)."""
        w = WorkerProcess(self.url, group or self.group, pid, self.tmp, ttl=ttl, pickle_key=pickle_key)
        self.workers.append(w)
        return w.start()

    async def close(self) -> None:
        for r in self.clients:
            await r.stop()
        for w in self.workers:
            w.close()


@pytest.fixture(params=["local", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def env(mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    server = request.getfixturevalue("sdk_server") if mode == "remote" else None
    e = Env(mode, server, tmp_path)
    try:
        yield e
    finally:
        await e.close()


@pytest_asyncio.fixture
async def remote_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Remote mode only: for scenarios that need real worker processes."""
    e = Env("remote", request.getfixturevalue("sdk_server"), tmp_path)
    try:
        yield e
    finally:
        await e.close()
