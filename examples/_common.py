"""What every example shares: finding (or starting) a server, running worker processes, effects lines.

* ``server()`` — a context manager yielding the server URL: ``TROTH_URL`` when set, else an embedded
  ``troth serve`` on a free loopback port (in-memory store), stopped on exit.
* ``Processes`` — starts example roles as subprocesses (``python -m examples.<name>.<role>``) with the
  server URL in their environment and unbuffered output, reads their output lines, waits for a line with
  a deadline, and stops every process it started, by PID.
* ``say(line)`` — prints one whole line, safe from a leaf's worker thread (``print`` writes the text and the
  newline in two steps, so two threads can merge their lines into one).
* ``effect(step, promise, phase, **fields)`` — appends one JSON line to ``EXAMPLE_EFFECTS_FILE`` (when set),
  flushed before returning, so the no-rerun check (docs/examples/index.md#no-rerun-check) can read what really
  ran.
* ``serve_forever(troth, banner)`` — start a worker, print its banner, run until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from troth import Troth

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"troth: listening on (http://[^ ]+)")


def line_buffered() -> None:
    """Flush every printed line at once (nothing printed before a SIGKILL is lost)."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


_stdout_lock = threading.Lock()


def say(line: str) -> None:
    """Print ``line`` and its newline in one write, flushed: a plain ``def`` leaf runs in a worker thread,
    and two threads calling ``print`` at once can interleave between a text and its newline."""
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def effect(step: str, promise: str, phase: str, **fields: Any) -> None:
    """Record that a leaf started, ended or failed, when ``EXAMPLE_EFFECTS_FILE`` is set."""
    path = os.environ.get("EXAMPLE_EFFECTS_FILE")
    if not path:
        return
    record = {
        "ts": time.time(),
        "pid": os.getpid(),
        "step": step,
        "promise": promise,
        "phase": phase,
        **fields,
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_effects(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def url_from_env() -> str | None:
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or None


def troth_command() -> list[str]:
    return [sys.executable, "-m", "troth.cli"]


class EmbeddedServer:
    """A ``troth serve`` subprocess on a free loopback port."""

    def __init__(self, store: str = ":memory:", extra: Sequence[str] = ()) -> None:
        self.store = store
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 90.0) -> EmbeddedServer:
        cmd = [
            *troth_command(),
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--store",
            self.store,
            *self.extra,
        ]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("the embedded troth server did not start")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The server URL: ``TROTH_URL`` if set, else an embedded server started here (and stopped after)."""
    url = url_from_env()
    if url:
        yield url
        return
    embedded = EmbeddedServer().start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


class Process:
    """One example role running as a subprocess; its output lines are collected as they arrive."""

    def __init__(self, args: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            list(args),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> str:
        """The first new output line containing ``pattern`` (a regular expression); fails at the deadline."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no line matching {pattern!r} within {timeout} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if regex.search(line):
                return line

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Processes:
    """Starts example roles pointed at one server and stops every one of them on exit."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = {**os.environ, "TROTH_URL": url, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.started: list[Process] = []

    def start(
        self, module: str, *args: str, env: dict[str, str] | None = None, name: str | None = None
    ) -> Process:
        full_env = {**self.env, **(env or {})}
        process = Process([sys.executable, "-u", "-m", module, *args], full_env, name or module)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def serve_forever(troth: Troth, banner: str) -> None:
    """Start ``troth`` as a worker, print ``banner`` once it can take tasks, run until SIGTERM/SIGINT."""
    line_buffered()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with troth:
            say(banner)
            await stop.wait()

    asyncio.run(main())
