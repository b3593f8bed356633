"""A throwaway PostgreSQL cluster for tests that stop and restart the database (never the machine's own).

``Cluster`` runs ``initdb`` into a fresh temporary directory and ``pg_ctl start`` on a free loopback port
(as the ``postgres`` user when the tests run as root, since PostgreSQL refuses to run as root). It is
stopped by its postmaster's pid — ``stop(immediate=True)`` is a crash (SIGQUIT), otherwise a fast
shutdown (SIGINT) — started again on the same port and data, and removed at ``close``. Without the
PostgreSQL server binaries the test is skipped (failed with ``TROTH_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import free_port
from stores import REQUIRED


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Cluster:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            reason = "the PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            if REQUIRED:
                pytest.fail(f"TROTH_REQUIRE_SERVICES=1 but {reason}")
            pytest.skip(reason)
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="troth-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\nshared_buffers = 32MB\n"
            )

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bindir / tool), *args]
        if self._user is not None:
            argv = ["runuser", "-u", self._user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> Cluster:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def createdb(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, *, immediate: bool = False, timeout: float = 60.0) -> None:
        """Stop the postmaster by its pid: SIGQUIT (a crash: no checkpoint) or SIGINT (fast shutdown)."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        raise AssertionError(f"PostgreSQL (pid {pid}) still running {timeout:.0f}s after the signal")

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop(immediate=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
