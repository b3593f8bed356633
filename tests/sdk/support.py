"""Test support for the SDK behaviour suite: a recording transport, async waiting, worker processes.

* ``Recording`` wraps the transport a ``Troth`` talks through (``LocalTransport`` or ``HttpTransport``) and
  keeps every request with its answer, and every pushed message, so a test can assert the protocol traffic
  the SDK produced (docs/sdk/replay.md#wire-mapping) in local mode and in remote mode alike. ``raw(kind,
  data)`` sends a request that is not recorded (for the test's own look-ups).
* ``until(probe, timeout, what)`` polls a (sync or async) condition until a deadline, never a fixed sleep.
* ``WorkerProcess`` runs ``tests/sdk/workers.py`` as a real process joined to a worker group; the
  functions it executes append lines to an effects file, and its traffic goes to a JSON-lines file.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

WORKER_SCRIPT = Path(__file__).with_name("workers.py")


def b64json(value: Any) -> str:
    """How the default codec stores ``value`` in a promise's ``data`` field (docs/sdk/errors-and-codec.md)."""
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def unb64json(data: str | None) -> Any:
    return None if not data else json.loads(base64.b64decode(data))


class Exchange:
    """One request the SDK sent and the answer it got."""

    __slots__ = ("at", "body", "data", "kind", "status")

    def __init__(self, kind: str, data: dict[str, Any], status: int | None, body: Any, at: float) -> None:
        self.kind = kind
        self.data = data
        self.status = status
        self.body = body
        self.at = at

    @property
    def id(self) -> str | None:
        """The id the request is about (the task id for ``task.*``, the promise for ``promise.*``)."""
        if self.kind == "task.create":
            return self.data["action"]["data"]["id"]  # type: ignore[no-any-return]
        if self.kind == "promise.register_listener":
            return self.data.get("awaited")
        return self.data.get("id")

    @property
    def action(self) -> dict[str, Any]:
        return self.data.get("action") or {}

    @property
    def inner_status(self) -> int | None:
        """For ``task.fence``: the status of the nested action's answer."""
        if not isinstance(self.body, dict):
            return None
        return (self.body.get("action") or {}).get("head", {}).get("status")

    def __repr__(self) -> str:
        extra = ""
        if self.kind == "task.fence":
            extra = f" {self.action.get('kind')} {self.action.get('data', {}).get('id')}"
        return f"<{self.kind} {self.id}{extra} v={self.data.get('version')} → {self.status}>"


class Recording:
    """A transport wrapper that records the SDK's requests, their answers, and the pushed messages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []
        self.messages: list[dict[str, Any]] = []
        self.drop_kinds: set[str] = set()
        self._deliver: Callable[[dict[str, Any]], None] | None = None

    async def start(self, group: str, pid: str, on_message: Callable[[dict[str, Any]], None]) -> None:
        def seen(message: dict[str, Any]) -> None:
            self.messages.append(message)
            on_message(message)

        self._deliver = seen
        await self.inner.start(group, pid, seen)

    def inject(self, message: dict[str, Any]) -> None:
        """Hand the SDK a pushed message as if the server had sent it."""
        assert self._deliver is not None, "not started"
        self._deliver(message)

    async def request(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        if kind in self.drop_kinds:  # e.g. a "stalled" worker whose heartbeats never leave the process
            self.exchanges.append(Exchange(kind, data, None, None, time.monotonic()))
            return 200, {}
        status, body = await self.inner.request(kind, data)
        at = time.monotonic()
        if kind == "task.fence_batch":  # recorded as the task.fence requests it stands for, in order
            answers = body.get("actions") if status == 200 and isinstance(body, dict) else None
            for i, action in enumerate(data["actions"]):
                one = {"id": data["id"], "version": data["version"], "action": action}
                answer = {"action": answers[i], "preload": []} if answers is not None else body
                self.exchanges.append(Exchange("task.fence", one, status, answer, at))
            return status, body
        self.exchanges.append(Exchange(kind, data, status, body, at))
        return status, body

    async def stop(self) -> None:
        await self.inner.stop()

    async def raw(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        """A request of the test's own, not recorded."""
        return await self.inner.request(kind, data)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------------------ queries

    def of(self, kind: str, id: str | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if e.kind == kind and (id is None or e.id == id)]

    def fenced(self, action_kind: str, id: str | None = None) -> list[Exchange]:
        """``task.fence`` requests carrying ``action_kind`` (for the promise ``id`` if given)."""
        return [
            e
            for e in self.exchanges
            if e.kind == "task.fence"
            and e.action.get("kind") == action_kind
            and (id is None or e.action.get("data", {}).get("id") == id)
        ]

    def fenced_ids(self, action_kind: str = "promise.create") -> list[str]:
        return [e.action["data"]["id"] for e in self.fenced(action_kind)]

    def executes(self, id: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m.get("kind") == "execute" and (id is None or m["data"]["task"]["id"] == id)
        ]

    async def promise(self, id: str) -> dict[str, Any]:
        status, body = await self.raw("promise.get", {"id": id})
        assert status == 200, f"promise.get {id}: {status} {body}"
        return body["promise"]  # type: ignore[no-any-return]

    async def task(self, id: str) -> dict[str, Any] | None:
        status, body = await self.raw("task.get", {"id": id})
        if status == 404:
            return None
        assert status == 200, f"task.get {id}: {status} {body}"
        return body["task"]  # type: ignore[no-any-return]


async def until(
    probe: Callable[[], T | Awaitable[T | None] | None],
    timeout: float = 60.0,
    what: str = "a condition",
    interval: float = 0.02,
) -> T:
    """Poll ``probe`` (sync or async) until it returns something truthy (a non-empty list counts); fail at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def count(path: Path, prefix: str) -> int:
    """How many effect lines are ``prefix``, or ``prefix`` + space + more (so "step a" is not "step ab")."""
    return sum(1 for line in lines(path) if line == prefix or line.startswith(prefix + " "))


class WorkerProcess:
    """``python tests/sdk/workers.py`` joined to ``group`` as ``pid``; see that module for the functions."""

    def __init__(
        self,
        url: str,
        group: str,
        pid: str,
        directory: Path,
        *,
        ttl: float = 2.0,
        pickle_key: str | None = None,
    ) -> None:
        self.url = url
        self.pickle_key = pickle_key
        self.group = group
        self.pid = pid
        self.ttl = ttl
        self.effects = directory / "effects.log"
        self.traffic = directory / f"traffic-{pid}.jsonl"
        self.stderr_path = directory / f"stderr-{pid}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable,
            str(WORKER_SCRIPT),
            "--url",
            self.url,
            "--group",
            self.group,
            "--pid",
            self.pid,
            "--ttl",
            str(self.ttl),
            "--effects",
            str(self.effects),
            "--traffic",
            str(self.traffic),
            *(["--pickle-key", self.pickle_key] if self.pickle_key else []),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        return self

    async def ready(self, timeout: float = 20.0) -> WorkerProcess:
        """Wait until the worker's push connection is open (it writes ``ready <pid>`` then)."""

        def probe() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker {self.pid} exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            return f"ready {self.pid}" in lines(self.effects)

        await until(probe, timeout, f"worker {self.pid} to be ready")
        return self

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()[-4000:]
        except FileNotFoundError:
            return ""

    def requests(self) -> list[dict[str, Any]]:
        """The requests this worker sent, with their answers (one JSON object a line)."""
        return [json.loads(line) for line in lines(self.traffic)]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.kill()
