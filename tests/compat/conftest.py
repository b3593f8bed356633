"""Shared harness for the compatibility tests: interpreters, cached client venvs, servers, processes.

This file owns everything the compat tests need that is not a scenario: finding a Python 3.12
interpreter, building (once, cached by SDK and interpreter version, under a lock) a venv with the
official ``resonate-sdk`` installed by pip, starting a real ``troth serve`` process on a free loopback
port with a temporary SQLite file, running client scripts as subprocesses with their output in files,
and waiting for conditions with a deadline (poll, never a fixed sleep).

When PyPI or the 3.12 interpreter is missing, tests skip with the reason, unless
``TROTH_REQUIRE_SERVICES=1``, in which case they fail. Environment knobs:

* ``TROTH_PYTHON312``       the interpreter to build the client venv from (else found on PATH / pyenv);
* ``TROTH_COMPAT_CACHE``    where the client venvs live (else ``~/.cache/troth/compat``, outside the repo);
* ``TROTH_COMPAT_SERVER``   ``troth`` (default) or ``reference``: run the same scenarios against the stand-in
  server built from the SDK's own state machine (``official_py/reference_server.py``), to tell a troth
  bug from a harness bug;
* ``TROTH_COMPAT_SERVER_URL`` use an already running server at this URL instead of starting one (every
  test uses fresh promise ids, so they can share it).

``start_server(..., auth=True)`` starts troth with JWT authentication (a key pair made in the test): the
client processes get a token in ``TROTH_TOKEN`` (the troth SDK) and ``TROTH_COMPAT_TOKEN`` (the official
clients' scenario scripts pass it to their constructors), and the test's own reads (``Server.request``)
use an admin token. The ``*_token.py`` modules re-run the scenarios that way.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from benchmarks.peers import install
from benchmarks.peers.install import find_python, python_version

from troth.protocol.messages import request_envelope

__all__ = ["find_python", "python_version"]  # re-exported for the compat tests

T = TypeVar("T")

REQUIRE_SERVICES = os.environ.get("TROTH_REQUIRE_SERVICES") == "1"
POLL_INTERVAL = 0.05
COMPAT_DIR = Path(__file__).resolve().parent


# ── skipping and waiting ────────────────────────────────────────────────────────────────────────────


def unavailable(reason: str) -> None:
    """Skip (or, with ``TROTH_REQUIRE_SERVICES=1``, fail) because an outside dependency is missing."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TROTH_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``probe`` every 50 ms until it returns something other than None/False; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}\n{diagnostics()}")
        time.sleep(POLL_INTERVAL)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"<{path.name}: missing>"
    return "\n".join(text.splitlines()[-lines:])


# ── processes ───────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Proc:
    """A child process whose stdout and stderr go to files (no pipes to fill up or deadlock on)."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, tag: str) -> list[Any]:
        """The JSON payloads of every ``TAG <json>`` line printed so far."""
        prefix = tag + " "
        lines = self.stdout().splitlines()
        return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]

    def describe(self) -> str:
        status = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {status}) stdout:\n{tail(self.stdout_path)}\n"
            f"--- {self.name} stderr:\n{tail(self.stderr_path)}"
        )

    def wait_line(self, tag: str, timeout: float, diagnostics: Callable[[], str] = lambda: "") -> Any:
        """Wait for the first ``TAG <json>`` line; fail early if the process exits without printing it."""

        def probe() -> Any:
            found = self.lines(tag)
            if found:
                return [found[0]]
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited before printing {tag}\n{self.describe()}\n{diagnostics()}")
            return None

        found = wait_until(probe, timeout, f"{tag} from {self.name}", lambda: self.describe() + diagnostics())
        return found[0]

    def result(self, timeout: float, diagnostics: Callable[[], str] = lambda: "") -> Any:
        """Wait for the process to exit 0 and return its ``RESULT`` payload."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not end within {timeout:.1f}s\n{self.describe()}\n{diagnostics()}")
        found = self.lines("RESULT")
        if self.popen.returncode != 0 or not found:
            pytest.fail(f"{self.name} failed\n{self.describe()}\n{diagnostics()}")
        return found[0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        """End this process (only this one, by its pid), escalating to SIGKILL after ``timeout``."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait(timeout=timeout)


@dataclass
class ProcessGroup:
    """Starts named child processes in one directory and ends every one of them at teardown."""

    workdir: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], cwd: Path | None = None) -> Proc:
        stdout_path = self.workdir / f"{name}.stdout"
        stderr_path = self.workdir / f"{name}.stderr"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd or self.workdir, env=self.env
            )
        proc = Proc(name, argv, popen, stdout_path, stderr_path)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for client processes: none of the caller's Resonate/troth client settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "TROTH_URL", "TROTH_TOKEN"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path, child_env())
    try:
        yield group
    finally:
        group.close()


# ── the Python 3.12 client venv ─────────────────────────────────────────────────────────────────────
# Interpreters and cached installs are shared with the peer benchmark: ``benchmarks/peers/install.py``.


def cache_root() -> Path:
    """``TROTH_COMPAT_CACHE``, else ``~/.cache/troth/compat`` (under ``XDG_CACHE_HOME`` when set)."""
    return install.cache_root("compat")


def client_venv(package: str, version: str, python: str, import_name: str) -> Path:
    """Return the python of a venv holding ``package==version``, building it once under a file lock.

    The venv is built in a scratch directory and renamed into place only after the install and an
    import check succeed, so a half-built venv is never reused. Skips (or fails) when pip cannot install;
    fails when the package installs but does not import.
    """
    name = f"{package}-{version}-py{install.exact_version(python)}"
    try:
        return install.python_env(cache_root(), name, python, [f"{package}=={version}"], import_name)
    except install.FetchError as exc:
        unavailable(str(exc))
        raise
    except install.InstallError as exc:
        pytest.fail(str(exc))


# ── servers ─────────────────────────────────────────────────────────────────────────────────────────


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return 200 <= int(resp.status) < 300
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Server:
    url: str
    proc: Proc | None
    kind: str
    token: str | None = None
    """An admin token for the test's own requests (a server with authentication on)."""

    def describe(self) -> str:
        return self.proc.describe() if self.proc is not None else f"--- external server at {self.url}"

    def request(self, kind: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One raw protocol request (``POST /``); returns the HTTP status and the decoded envelope."""
        body = json.dumps(request_envelope(kind, data)).encode()
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + "/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read() or b"{}")

    def promise(self, promise_id: str) -> dict[str, Any]:
        """``promise.get``: the promise record, failing the test if the server has none."""
        status, envelope = self.request("promise.get", {"id": promise_id})
        if status != 200:
            pytest.fail(f"promise.get {promise_id} -> HTTP {status}: {envelope}\n{self.describe()}")
        return dict(envelope["data"]["promise"])


def start_server(
    procs: ProcessGroup, client_python: Path, store: Path, name: str = "server", *, auth: bool = False
) -> Server:
    """Start the server under test (troth by default) on a free port and wait until it answers; with
    ``auth``, troth with JWT authentication and the clients' tokens in ``procs.env``."""
    external = os.environ.get("TROTH_COMPAT_SERVER_URL")
    admin: str | None = None
    auth_args: list[str] = []
    if auth:
        if external or os.environ.get("TROTH_COMPAT_SERVER", "troth") != "troth":
            pytest.skip("the token-authenticated runs need a troth server started here")
        from authkit import Keys

        keys = Keys.generate(store.parent / "auth")
        auth_args = ["--auth-public-key", str(keys.public_path)]
        client = keys.token("", sub="compat-client")  # every id, no administration
        procs.env["TROTH_TOKEN"] = client
        procs.env["TROTH_COMPAT_TOKEN"] = client
        admin = keys.token(admin=True, sub="compat-test")
    if external:
        url = external.rstrip("/")
        wait_until(lambda: http_ok(url + "/health"), 60.0, f"the external server at {url} to answer /health")
        return Server(url, None, "external")
    kind = os.environ.get("TROTH_COMPAT_SERVER", "troth")
    last = ""
    for attempt in range(3):  # a free port can be taken between probing and binding: retry on early exit
        port = free_port()
        if kind == "reference":
            script = COMPAT_DIR / "official_py" / "reference_server.py"
            argv = [str(client_python), str(script), "--port", str(port)]
        elif kind == "troth":
            if importlib.util.find_spec("troth.cli") is None:
                pytest.fail("troth.cli is not importable: `pip install -e .` the troth package first")
            argv = [sys.executable, "-m", "troth.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--store", str(store), "--metrics-port", "0", *auth_args]
        else:
            pytest.fail(f"TROTH_COMPAT_SERVER must be 'troth' or 'reference', not {kind!r}")
        proc = procs.start(f"{name}-{attempt}", argv)
        url = f"http://127.0.0.1:{port}"

        def up(proc: Proc = proc, url: str = url) -> bool | None:
            if proc.popen.poll() is not None:
                return True
            return http_ok(url + "/health") or None

        wait_until(up, 60.0, f"{kind} server on {url} to answer /health", proc.describe)
        if proc.popen.poll() is None:
            return Server(url, proc, kind, admin)
        last = proc.describe()
    pytest.fail(f"the {kind} server would not start\n{last}")


def crash_and_restart(procs: ProcessGroup, server: Server) -> Server:
    """SIGKILL the server process and start it again with the same command line (same port, same store)."""
    if server.proc is None:
        pytest.skip("cannot restart an external server")
    assert server.proc is not None
    server.proc.stop(signal.SIGKILL)
    proc = procs.start(f"{server.proc.name}-restarted", server.proc.argv)

    def up() -> bool | None:
        if proc.popen.poll() is not None:
            pytest.fail(f"the restarted server exited\n{proc.describe()}")
        return http_ok(server.url + "/health") or None

    wait_until(up, 60.0, f"the restarted server on {server.url}", proc.describe)
    return Server(server.url, proc, server.kind, server.token)
