"""The local-mode engine (``EngineConfig(exclusive=True)``, the SDK's ``Troth.local(path)``) commits lease
bookkeeping lazily (docs/getting-started.md#local-durability): a ``task.acquire`` or a timer pass is
answered before its commit, which comes with the next request that is not lazy — but a message that leaves
the process over HTTP is pushed only once what it tells is committed. SQLite only: local mode's store."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest_asyncio

from engine_harness import envelope
from troth.server.engine import Engine, EngineConfig
from troth.server.store.sqlite import SqliteStore


def committed_state(db: Path, table: str, id: str) -> str | None:
    peek = sqlite3.connect(db)  # another connection sees only what was committed
    try:
        row = peek.execute(f"SELECT state FROM {table} WHERE id = ?", (id,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        peek.close()


@pytest_asyncio.fixture
async def local(tmp_path: Path) -> AsyncIterator[tuple[Engine, Path]]:
    db = tmp_path / "local.db"
    engine = Engine(
        SqliteStore(str(db)),
        EngineConfig(server_url="local://", exclusive=True, push_allow=("127.0.0.1",)),
    )
    await engine.start()
    try:
        yield engine, db
    finally:
        await engine.stop()


async def call(engine: Engine, kind: str, data: dict[str, Any]) -> Any:
    status, body = await engine.handle(envelope(kind, data))
    answer = msgspec.json.decode(body)
    assert status == 200, answer
    return answer["data"]


async def test_an_acquire_is_answered_before_its_commit_and_committed_by_the_next_request(
    local: tuple[Engine, Path],
) -> None:
    engine, db = local
    far = int(time.time() * 1000) + 3_600_000
    await call(
        engine,
        "promise.create",
        {"id": "job", "timeoutAt": far, "tags": {"resonate:target": "poll://any@default"}},
    )
    assert committed_state(db, "tasks", "job") == "pending"  # a promise.create commits before its answer
    data = await call(engine, "task.acquire", {"id": "job", "version": 0, "pid": "p1", "ttl": 60_000})
    assert data["task"]["state"] == "acquired"
    assert committed_state(db, "tasks", "job") == "pending"  # answered; a restart would end it anyway
    await call(engine, "promise.get", {"id": "job"})
    assert committed_state(db, "tasks", "job") == "acquired"  # committed with the next request


async def test_a_message_pushed_over_http_tells_only_what_is_committed(local: tuple[Engine, Path]) -> None:
    engine, db = local
    seen: list[tuple[dict[str, Any], str | None]] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            message = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            seen.append((message, committed_state(db, "promises", "timer")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/done"
        due = int(time.time() * 1000) + 100
        await call(engine, "promise.create", {"id": "timer", "timeoutAt": due})
        await call(engine, "promise.register_listener", {"awaited": "timer", "address": url})
        # The timer pass that times the promise out is lazy; its unblock goes out over HTTP.
        await _wait(arrived)
    finally:
        receiver.shutdown()
        receiver.server_close()
    [(message, state_then)] = seen
    assert message["kind"] == "unblock" and message["data"]["promise"]["state"] == "rejected_timedout"
    assert state_then == "rejected_timedout"  # committed before the push left the process


async def _wait(event: threading.Event, timeout: float = 10.0) -> None:
    import asyncio

    ok = await asyncio.get_running_loop().run_in_executor(None, event.wait, timeout)
    assert ok, "no push arrived"
