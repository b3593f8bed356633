"""Test support for the SDK behaviour suite: a recording transport, async waiting, worker processes.

* ``Recording`` is ``troth.testing.RecordingTransport`` wrapped around the transport a ``Troth`` talks
  through (``LocalTransport`` or ``HttpTransport``): every request with its answer (a ``task.fence_batch`` as
  the ``task.fence`` requests it stands for), and every pushed message, so a test can assert the protocol
  traffic the SDK produced (docs/sdk/replay.md#wire-mapping) in local mode and in remote mode alike.
  ``raw(request)`` sends a request that is not recorded (for the test's own look-ups).
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
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from troth.protocol import messages as wire
from troth.protocol.records import Promise, Task
from troth.testing import Exchange, RecordingTransport

__all__ = ["Exchange", "Recording", "WorkerProcess", "b64json", "count", "lines", "unb64json", "until"]

T = TypeVar("T")

WORKER_SCRIPT = Path(__file__).with_name("workers.py")


def b64json(value: Any) -> str:
    """How the default codec stores ``value`` in a promise's ``data`` field (docs/sdk/errors-and-codec.md)."""
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def unb64json(data: str | None) -> Any:
    return None if not data else json.loads(base64.b64decode(data))


class Recording(RecordingTransport):
    """The public recording transport, with look-ups of promises and tasks that are not recorded."""

    async def promise(self, id: str) -> Promise:
        answer = await self.raw(wire.promise_get(id))
        assert answer.data is not None, f"promise.get {id}: {answer}"
        return answer.data.promise

    async def task(self, id: str) -> Task | None:
        answer = await self.raw(wire.task_get(id))
        if answer.status == 404:
            return None
        assert answer.data is not None, f"task.get {id}: {answer}"
        return answer.data.task


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


async def limit_used(effects: Path, prefix: str, customers: int, concurrency: int) -> None:
    """While every job waits for ``<effects>.limited.open`` (``workers.limited_job``): wait until each
    customer's first ``concurrency`` jobs have started — the limit is used, not just respected — check that
    no customer has more, then let them all go on."""

    def started() -> dict[str, int]:
        seen: dict[str, int] = defaultdict(int)
        for line in lines(effects):
            parts = line.split()
            if parts[0] == "job-start" and parts[1].startswith(prefix):
                seen[parts[1]] += 1
        return seen

    await until(
        lambda: len(started()) == customers and all(n >= concurrency for n in started().values()),
        120,
        f"{concurrency} jobs started for each of {customers} customers",
    )
    assert all(n == concurrency for n in started().values()), dict(started())
    Path(f"{effects}.limited.open").touch()


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
