"""Which store the tests run on, chosen in one place: ``TROTH_TEST_STORE=sqlite`` (default) or ``postgres``.

Every store-independent tier asks this module for its store instead of building one:

* ``unit_store(name)`` — a ``Store`` object for an in-process engine (unit and model-based tests): SQLite
  in memory, or a PostgreSQL database of this test process emptied first (``DELETE`` of every table:
  ≈1 ms, where ``TRUNCATE`` takes ≈14 ms on these machines; the database itself is created once per
  session and name).
* ``server_store(path)`` — the ``--store`` value for a ``troth serve`` process: ``:memory:`` or the SQLite
  file ``path``, or a PostgreSQL database created for it (≈20 ms; the same ``path`` maps to the same
  database within a session, so a restarted server finds its data).

PostgreSQL is ``TROTH_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, used as
the administrative connection). Database names carry the pytest-xdist worker id and the process id
(``troth_t_<worker>_<pid>_<n>``), so parallel workers and concurrent test runs never share one; they are
dropped when the session ends (and leftovers of dead runs at the next start). When PostgreSQL is chosen
but unreachable, every test is skipped with the reason — or, with ``TROTH_REQUIRE_SERVICES=1`` (CI), the
run fails at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from troth.server.store.base import Store
from troth.server.store.postgres import PostgresStore
from troth.server.store.sqlite import SqliteStore

T = TypeVar("T")

KIND = os.environ.get("TROTH_TEST_STORE", "sqlite").strip().lower() or "sqlite"
if KIND not in ("sqlite", "postgres"):
    raise RuntimeError(f"TROTH_TEST_STORE must be sqlite or postgres, not {KIND!r}")
ADMIN_URL = os.environ.get("TROTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRED = os.environ.get("TROTH_REQUIRE_SERVICES") == "1"
WORKER = re.sub(r"[^a-z0-9]", "", os.environ.get("PYTEST_XDIST_WORKER", "main").lower()) or "main"
PREFIX = f"troth_t_{WORKER}_{os.getpid()}"
_STALE = re.compile(r"^troth_t_[a-z0-9]+_(\d+)_\d+$")

_serial = itertools.count(1)
_by_key: dict[str, str] = {}
_created: list[str] = []
_lock = threading.Lock()
_unavailable: str | bool | None = False  # False: not checked yet


def on_postgres() -> bool:
    return KIND == "postgres"


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run an admin coroutine to completion from sync or async code (in a thread with its own loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="troth-test-pg-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _url(database: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + database


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used (``None`` when it can); checked once."""
    global _unavailable
    if _unavailable is False:

        async def probe() -> None:
            conn = await asyncpg.connect(ADMIN_URL, timeout=3)
            await conn.close()

        try:
            _sync(probe())
            _unavailable = None
        except Exception as exc:
            _unavailable = f"PostgreSQL at {ADMIN_URL} is unreachable: {' '.join(str(exc).split())}"
    return _unavailable or None


def _create_database() -> str:
    name = f"{PREFIX}_{next(_serial)}"
    _sync(_admin(f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"))
    with _lock:
        _created.append(name)
    return _url(name)


async def _empty(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'troth_schema'"
        )
        for row in tables:
            await conn.execute(f'DELETE FROM "{row[0]}"')
    finally:
        await conn.close()


def unit_store(name: str = "unit") -> Store:
    """A store for an in-process engine, empty, on the chosen kind of store."""
    if not on_postgres():
        return SqliteStore(":memory:")
    key = f"unit:{name}"
    with _lock:
        url = _by_key.get(key)
    if url is None:
        url = _create_database()
        with _lock:
            _by_key[key] = url
    else:
        _sync(_empty(url))
    return PostgresStore(url, pool_size=4)


def server_store(path: str | Path | None = None) -> str:
    """The ``--store`` value for a ``troth serve`` process: empty at first use; ``path`` keeps it across
    restarts (a SQLite file, or the PostgreSQL database made for that path)."""
    if not on_postgres():
        return ":memory:" if path is None else str(path)
    if path is None:
        return _create_database()
    key = f"path:{path}"
    with _lock:
        url = _by_key.get(key)
    if url is None:
        url = _create_database()
        with _lock:
            _by_key[key] = url
    return url


def _drop_stale() -> None:
    """Drop the databases of earlier runs whose process is gone (a killed run cannot clean up)."""

    async def work() -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'troth_t_%'")
            for row in rows:
                match = _STALE.match(row[0])
                if match is None or _alive(int(match.group(1))):
                    continue
                await conn.execute(f"DROP DATABASE IF EXISTS {row[0]} WITH (FORCE)")
        finally:
            await conn.close()

    _sync(work())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ─── pytest hooks (registered by tests/conftest.py) ───────────────────────────────────────────────────


def pytest_report_header(config: pytest.Config) -> str:
    if on_postgres():
        return f"troth test store: postgres ({ADMIN_URL}, databases {PREFIX}_*)"
    return "troth test store: sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not on_postgres():
        return
    reason = postgres_unavailable()
    if reason is None:
        _drop_stale()
        return
    if REQUIRED:
        raise pytest.UsageError(f"TROTH_TEST_STORE=postgres and TROTH_REQUIRE_SERVICES=1, but {reason}")
    skip = pytest.mark.skip(reason=f"TROTH_TEST_STORE=postgres: {reason}")
    for item in items:
        item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    with _lock:
        names = list(_created)
        _created.clear()
    if names:
        _sync(_admin(*(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in names)))


def require_postgres() -> None:
    """For tests that need PostgreSQL whatever the chosen store: skip without it (fail in CI)."""
    reason = postgres_unavailable()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"TROTH_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)


def new_database() -> str:
    """A fresh PostgreSQL database of this session (dropped at its end); call ``require_postgres`` first."""
    return _create_database()
