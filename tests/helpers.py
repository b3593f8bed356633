"""Helpers for tests that run ``troth serve`` as a real process and talk to it over HTTP and SSE.

* ``ServerProcess`` starts ``python -m troth.cli serve`` on a free loopback port (``--port 0``; the port is
  read from the ``troth: listening on http://HOST:PORT`` line the server prints on stderr), drains its
  stderr into memory, and offers ``post(kind, data)`` → ``(status, json)``, ``sse(group, id)`` → ``SSE``,
  ``kill()`` (SIGKILL), ``terminate()`` (SIGTERM) and ``wait()``, each with a deadline. It is a context
  manager; leaving it kills the process if it still runs.
* ``SSE`` reads one ``GET /poll/{group}/{id}`` stream on a shared background asyncio loop (httpx), checks
  every frame is exactly ``data: <json>\\n\\n`` and queues the parsed messages: ``get(timeout)`` waits for
  the next one, ``close()`` drops the connection.
* ``wait_until(probe, timeout, what)`` polls a condition until a deadline; nothing here sleeps for a
  fixed time.

Everything is synchronous from the test's point of view, so tests need no event loop of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from troth.protocol import messages
from troth.protocol.messages import PROTOCOL_VERSION as PROTOCOL_VERSION  # re-exported for the tests
from troth.protocol.messages import Request, request_envelope

T = TypeVar("T")

START_TIMEOUT = 60.0
DEADLINE = 30.0
"""How long a helper waits for something that must happen. Only a failing test waits this long, so it is
sized for a loaded machine (a process may be descheduled for seconds), never for a quiet one."""
POLL_INTERVAL = 0.02
_LISTENING = "troth: listening on "
_corr = itertools.count(1)


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for listeners whose port the server does not print)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def envelope(kind: str, data: Any, head: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A request envelope (``troth.protocol.messages.request_envelope``), with ``head`` fields added."""
    env = request_envelope(kind, data, corr_id=f"it-{next(_corr)}")
    if head:
        env["head"].update(head)
    return env


def server_command() -> list[str]:
    return [sys.executable, "-m", "troth.cli"]


def console_script() -> Path:
    """The ``troth`` console script installed next to the running interpreter."""
    return Path(sys.executable).with_name("troth")


# ─── a background event loop for SSE streams ──────────────────────────────────────────────────────────


class _LoopThread:
    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sse-loop", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class SSEFormatError(AssertionError):
    pass


_END = object()


class SSE:
    """One ``GET /poll/{group}/{id}`` stream read in the background; messages arrive on a queue."""

    def __init__(self, base_url: str, group: str, id: str, headers: Mapping[str, str] | None = None) -> None:
        self.url = f"{base_url}/poll/{group}/{id}"
        self.group = group
        self.id = id
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.body = b""
        self.frames: list[bytes] = []
        self.bad_frames: list[bytes] = []
        self.error: BaseException | None = None
        self.responded = threading.Event()
        self.ended = threading.Event()
        self._messages: queue.Queue[Any] = queue.Queue()
        self._headers = dict(headers or {})
        self._future = _LoopThread.get().submit(self._run())

    async def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("GET", self.url, headers=self._headers) as response,
            ):
                self.status = response.status_code
                self.headers = response.headers
                if response.status_code != 200:
                    self.body = await response.aread()
                    self.responded.set()
                    return
                self.responded.set()
                buffer = b""
                async for chunk in response.aiter_raw():
                    buffer += chunk
                    while b"\n\n" in buffer:
                        raw, buffer = buffer.split(b"\n\n", 1)
                        self._frame(raw + b"\n\n")
                if buffer:
                    self.bad_frames.append(buffer)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # surfaced through .error / get()
            self.error = exc
        finally:
            self.responded.set()
            self.ended.set()
            self._messages.put(_END)

    def _frame(self, raw: bytes) -> None:
        self.frames.append(raw)
        body = raw[:-2]
        if not body.startswith(b"data: ") or b"\n" in body:
            self.bad_frames.append(raw)
            return
        try:
            self._messages.put(json.loads(body[len(b"data: ") :]))
        except ValueError:
            self.bad_frames.append(raw)

    # ------------------------------------------------------------------------------------------- use

    def wait_open(self, timeout: float = DEADLINE) -> SSE:
        """Wait until the server answered 200 (the connection is then registered); fail otherwise."""
        if not self.responded.wait(timeout):
            raise AssertionError(f"no answer to GET {self.url} within {timeout}s")
        if self.status != 200:
            raise AssertionError(f"GET {self.url} answered {self.status} {self.body!r} ({self.error!r})")
        return self

    def get(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next message; fails if none arrives within ``timeout`` or the stream ended."""
        try:
            item = self._messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message on {self.url} within {timeout}s") from None
        if item is _END:
            self._messages.put(_END)
            raise AssertionError(f"stream {self.url} ended ({self.error!r}) while waiting for a message")
        if self.bad_frames:
            raise SSEFormatError(f"malformed SSE frames on {self.url}: {self.bad_frames!r}")
        return item  # type: ignore[no-any-return]

    def get_where(self, match: Callable[[dict[str, Any]], bool], timeout: float = DEADLINE) -> dict[str, Any]:
        """The first message satisfying ``match`` (others are skipped) before the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message on {self.url} within {timeout}s")
            msg = self.get(left)
            if match(msg):
                return msg

    def expect_nothing(self, within: float) -> None:
        """Fail if a message arrives (or the stream ends) within ``within`` seconds."""
        try:
            item = self._messages.get(timeout=within)
        except queue.Empty:
            return
        if item is _END:
            self._messages.put(_END)
            raise AssertionError(f"stream {self.url} ended ({self.error!r})")
        raise AssertionError(f"unexpected message on {self.url}: {item!r}")

    def drain(self) -> list[dict[str, Any]]:
        """Every message already queued (without waiting)."""
        out = []
        while True:
            try:
                item = self._messages.get_nowait()
            except queue.Empty:
                return out
            if item is _END:
                self._messages.put(_END)
                return out
            out.append(item)

    def close(self, timeout: float = DEADLINE) -> None:
        """Drop the connection (client side) and wait until the reader has stopped."""
        self._future.cancel()  # cancels the reader task on the loop, which closes the connection
        if not self.ended.wait(timeout):
            raise AssertionError(f"SSE reader for {self.url} did not stop within {timeout}s")

    def __enter__(self) -> SSE:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ─── the server process ──────────────────────────────────────────────────────────────────────────────


class ServerProcess:
    """``troth serve`` in a child process on loopback. Use as a context manager or call ``start()``."""

    def __init__(
        self,
        store: str | Path = ":memory:",
        *,
        args: Sequence[str] = (),
        metrics_port: int | None = 0,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        subcommand: str = "serve",
        program: Sequence[str] | None = None,
        ca: str | Path | None = None,
    ) -> None:
        """``ca``: the server speaks TLS (its ``args`` give ``--tls-cert``/``--tls-key``); requests are
        ``https://`` and verify the certificate against this CA bundle."""
        self.ca = str(ca) if ca is not None else None
        self.verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=self.ca) if self.ca else True
        self.subcommand = subcommand
        self.program = list(program) if program is not None else server_command()
        self.store = str(store)
        self.args = list(args)
        self.metrics_port = metrics_port
        self.host = host
        self.env = dict(os.environ)
        self.env.pop("TROTH_PORT", None)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.stderr_lines: list[str] = []
        self._stderr_cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._streams: list[SSE] = []

    # ------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"{'https' if self.ca else 'http'}://{self.host}:{self.port}"

    @property
    def stderr(self) -> str:
        with self._stderr_cond:
            return "".join(self.stderr_lines)

    def command(self) -> list[str]:
        return [
            *self.program,
            self.subcommand,
            "--host",
            self.host,
            "--port",
            "0",
            *([] if self.metrics_port is None else ["--metrics-port", str(self.metrics_port)]),
            *(["--store", self.store] if self.subcommand == "serve" else []),
            *self.args,
        ]

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        self.stderr_lines = []
        self.port = None
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self._stderr_cond:
            while self.port is None:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"troth serve exited with {self.proc.returncode} before listening:\n{self.stderr}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise AssertionError(f"troth serve did not listen within {timeout}s:\n{self.stderr}")
                self._stderr_cond.wait(min(left, 0.1))
        wait_until(lambda: self.ready_status() == 200, max(1.0, deadline - time.monotonic()), "GET /ready")
        return self

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            with self._stderr_cond:
                self.stderr_lines.append(line)
                if self.port is None and line.startswith(_LISTENING):
                    hostport = line[len(_LISTENING) :].split()[0].split("://", 1)[1]
                    self.port = int(hostport.rsplit(":", 1)[1])
                self._stderr_cond.notify_all()
        with self._stderr_cond:
            self._stderr_cond.notify_all()

    def ready_status(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/ready", timeout=2.0, verify=self.verify).status_code
        except httpx.HTTPError:
            return None

    @property
    def returncode(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def wait(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to exit; returns its exit code, fails at the deadline."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"troth serve still running after {timeout}s:\n{self.stderr}") from None
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def kill(self, timeout: float = DEADLINE) -> int:
        """SIGKILL and wait."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(timeout)

    def terminate(self, timeout: float = DEADLINE) -> int:
        """SIGTERM and wait (fails if the process is still there at the deadline)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        for stream in self._streams:
            with contextlib.suppress(AssertionError):
                stream.close()
        self._streams.clear()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def restart(self) -> ServerProcess:
        """Start a fresh process on the same store (after ``kill``/``terminate``)."""
        self.close()
        return self.start()

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- HTTP

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=10.0, verify=self.verify)
        return self._client

    def post(self, kind: str, data: Any, head: Mapping[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """``POST /`` one envelope; returns the HTTP status and the decoded response envelope."""
        response = self.client.post("/", json=envelope(kind, data, head))
        return response.status_code, response.json()

    def send(self, request: Request[Any]) -> tuple[int, dict[str, Any]]:
        """``post`` a request built by ``troth.protocol.messages``."""
        return self.post(request.kind, request.data)

    def post_raw(self, body: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """``POST /`` these bytes, as ``application/json`` unless ``headers`` say otherwise."""
        return self.client.post(
            "/", content=body, headers={"content-type": "application/json", **(headers or {})}
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def sse(self, group: str, id: str, *, wait: bool = True, headers: Mapping[str, str] | None = None) -> SSE:
        """Open ``GET /poll/{group}/{id}``; by default waits until the server registered it (200)."""
        stream = SSE(self.url, group, id, headers)
        self._streams.append(stream)
        if wait:
            stream.wait_open()
        return stream

    # ------------------------------------------------------------------------------- protocol shortcuts

    def create(
        self,
        id: str,
        *,
        timeout_at: int | None = None,
        tags: Mapping[str, str] | None = None,
        param: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        value = dict(param or {})
        deadline = timeout_at if timeout_at is not None else now_ms() + 3_600_000
        create = messages.promise_create(id, deadline, value.get("data"), tags, value.get("headers"))
        status, body = self.send(create)
        assert status == 200, body
        return body["data"]["promise"]  # type: ignore[no-any-return]

    def settle(self, id: str, state: str = "resolved", data: str | None = None) -> dict[str, Any]:
        status, body = self.send(messages.promise_settle(id, state, data))
        assert status == 200, body
        return body["data"]["promise"]  # type: ignore[no-any-return]

    def acquire(self, id: str, version: int, pid: str, ttl: int = 60_000) -> tuple[int, dict[str, Any]]:
        return self.send(messages.task_acquire(id, version, pid, ttl))

    def fulfill(self, id: str, version: int, state: str = "resolved") -> tuple[int, dict[str, Any]]:
        return self.send(messages.task_fulfill(id, version, state, None))

    def listen(self, awaited: str, address: str) -> dict[str, Any]:
        status, body = self.send(messages.promise_register_listener(awaited, address))
        assert status == 200, body
        return body["data"]["promise"]  # type: ignore[no-any-return]

    def metrics(self, port: int | None = None) -> str:
        response = httpx.get(f"http://{self.host}:{port or self.port}/metrics", timeout=5.0)
        assert response.status_code == 200, response.text
        return response.text

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample of ``GET /metrics``, or ``None`` if absent."""
        return sample(self.metrics(), name, labels)


def sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    want = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
                return float(s.value)
    return None


def raw_http(host: str, port: int, request: bytes, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it (or ``timeout``).

    ``half_close`` shuts the sending side after the request, so a server waiting for more bytes sees EOF.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def barrier(server: ServerProcess, stream: SSE, tag: str, timeout: float = DEADLINE) -> list[dict[str, Any]]:
    """Messages ``stream`` received before a marker sent to exactly that connection (FIFO per stream).

    Creates a promise targeted at ``poll://uni@<group>/<id>`` and reads until its ``execute`` arrives;
    everything read before it had been delivered to this connection earlier.
    """
    marker = f"barrier-{tag}-{next(_corr)}"
    server.create(marker, tags={"resonate:target": f"poll://uni@{stream.group}/{stream.id}"})
    before = []
    deadline = time.monotonic() + timeout
    while True:
        msg = stream.get(max(0.0, deadline - time.monotonic()))
        if msg.get("kind") == "execute" and msg["data"]["task"]["id"] == marker:
            return before
        before.append(msg)


def post_many(server: ServerProcess, bodies: list[dict[str, object]], workers: int = 8) -> list[int]:
    """POST each envelope in ``bodies`` to ``server`` from ``workers`` threads at once; the HTTP statuses."""

    def run(chunk: list[dict[str, object]]) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            return [client.post("/", json=b).status_code for b in chunk]

    chunks = [bodies[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        return [s for part in pool.map(run, chunks) for s in part]
