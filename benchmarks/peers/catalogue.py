"""The systems the peer benchmark compares, how each is installed, and how its driver is started.

One :class:`Peer` per column of the table. ``prepare()`` installs what the peer needs (cached, see
``install.py``) and returns a :class:`Ready` — the interpreter and the driver's command line — or raises
:class:`Unavailable` with the reason it cannot run here. Versions are pinned: a figure is only worth
comparing when it says what it measured.

Which troth configuration each peer is compared with (its ``versus``): a peer keeping its state in memory
is compared with troth local mode in memory; every other (a server, or a database on disk) with troth
remote, a ``troth serve`` on a SQLite file with fsync.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.peers.install import (
    FetchError,
    InstallError,
    cache_root,
    exact_version,
    find_python,
    is_ready,
    npm_env,
    python_env,
)

DRIVERS = Path(__file__).resolve().parent / "drivers"

DBOS_VERSION = "3.4.0"
RESTATE_SERVER_VERSION = "1.7.12"
RESTATE_SDK_VERSION = "1.2.0"
HYPERCORN_VERSION = "0.18.0"
AIOHTTP_VERSION = "3.14.5"  # the Restate driver's HTTP client (the ingress is plain HTTP)
RESONATE_SDK_VERSION = "0.8.1"
POSTGRES = ("127.0.0.1", 5432)


class Unavailable(Exception):
    """This peer cannot run on this machine; the message says why."""


@dataclass
class Ready:
    python: str
    argv: list[str]  # the driver and its peer-specific options (the harness adds the common ones)
    install: str  # how it was installed this time: "cached" or "installed in 41 s"


@dataclass
class Peer:
    key: str
    label: str
    versus: str  # the key of the troth configuration it is compared with
    prepare: Callable[[bool], Ready]  # prepare(may_install)
    needs_troth_server: bool = False
    notes: list[str] = field(default_factory=list)


# ── interpreters and installs ───────────────────────────────────────────────────────────────────────


def troth_python() -> str:
    return sys.executable


def base_python() -> str:
    """The interpreter troth's venv was made from: DBOS and Restate's SDK run on the same Python as troth."""
    return str(getattr(sys, "_base_executable", sys.executable))


def timed_install(
    target_ready: Callable[[], bool], build: Callable[[], str], may_install: bool
) -> tuple[str, str]:
    """Run ``build`` (which returns a path), saying whether it was cached or how long it took."""
    cached = target_ready()
    if not cached and not may_install:
        raise Unavailable("not installed (run without --no-install to install it into the cache)")
    started = time.monotonic()
    try:
        path = build()
    except FetchError as exc:
        raise Unavailable(f"cannot install: {exc}") from exc
    except InstallError as exc:
        raise Unavailable(str(exc)) from exc
    return path, "cached" if cached else f"installed in {time.monotonic() - started:.0f} s"


def python_venv(
    kind: str, name: str, python: str, requirements: list[str], check: str, may_install: bool
) -> tuple[str, str]:
    root = cache_root(kind)
    full = f"{name}-py{exact_version(python)}"
    return timed_install(
        lambda: is_ready(root / full),
        lambda: str(python_env(root, full, python, requirements, check)),
        may_install,
    )


# ── troth ───────────────────────────────────────────────────────────────────────────────────────────


def troth_peer(mode: str) -> Callable[[bool], Ready]:
    def prepare(may_install: bool) -> Ready:
        return Ready(troth_python(), [str(DRIVERS / "troth_driver.py"), "--mode", mode], "this checkout")

    return prepare


# ── DBOS Transact ───────────────────────────────────────────────────────────────────────────────────


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(POSTGRES, timeout=2):
            return True
    except OSError:
        return False


def dbos_peer(database: str) -> Callable[[bool], Ready]:
    def prepare(may_install: bool) -> Ready:
        if database == "postgres" and not postgres_reachable():
            raise Unavailable(f"no PostgreSQL at {POSTGRES[0]}:{POSTGRES[1]}")
        python, how = python_venv(
            "peers", f"dbos-{DBOS_VERSION}", base_python(), [f"dbos=={DBOS_VERSION}"], "dbos", may_install
        )
        argv = [str(DRIVERS / "dbos_driver.py"), "--database", database]
        if database == "postgres":
            argv += ["--postgres", f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/postgres"]
        return Ready(python, argv, how)

    return prepare


# ── Restate ─────────────────────────────────────────────────────────────────────────────────────────


def restate_server_binary(node_modules: Path) -> Path:
    return node_modules / "@restatedev" / "restate-server-linux-x64" / "bin" / "restate-server"


def restate_prepare(may_install: bool) -> Ready:
    if sys.platform != "linux" or not shutil.which("npm"):
        raise Unavailable("the Restate server is installed from npm's linux-x64 package: needs Linux and npm")
    root = cache_root("peers")
    name = f"restate-server-{RESTATE_SERVER_VERSION}"

    def check(node_modules: Path) -> None:
        binary = restate_server_binary(node_modules)
        if not binary.exists():
            raise InstallError(f"the npm package has no linux-x64 binary at {binary}")

    modules, how_server = timed_install(
        lambda: is_ready(root / name),
        lambda: str(npm_env(root, name, [f"@restatedev/restate-server@{RESTATE_SERVER_VERSION}"], check)),
        may_install,
    )
    python, how_sdk = python_venv(
        "peers",
        f"restate-sdk-{RESTATE_SDK_VERSION}",
        base_python(),
        [
            f"restate-sdk=={RESTATE_SDK_VERSION}",
            f"hypercorn=={HYPERCORN_VERSION}",
            f"aiohttp=={AIOHTTP_VERSION}",
        ],
        "restate, hypercorn, aiohttp",
        may_install,
    )
    how = "cached" if how_server == how_sdk == "cached" else f"server {how_server}; SDK {how_sdk}"
    argv = [str(DRIVERS / "restate_driver.py"), "--restate-server", str(restate_server_binary(Path(modules)))]
    return Ready(python, argv, how)


# ── the official Resonate Python SDK ────────────────────────────────────────────────────────────────


def resonate_peer(mode: str) -> Callable[[bool], Ready]:
    def prepare(may_install: bool) -> Ready:
        python = find_python(3, 12)
        if python is None:
            raise Unavailable("resonate-sdk needs Python 3.12: none found (set TROTH_PYTHON312)")
        # the compat tests' venv: one install serves both
        venv, how = python_venv(
            "compat",
            f"resonate-sdk-{RESONATE_SDK_VERSION}",
            python,
            [f"resonate-sdk=={RESONATE_SDK_VERSION}"],
            "resonate.resonate",
            may_install,
        )
        return Ready(venv, [str(DRIVERS / "resonate_driver.py"), "--mode", mode], how)

    return prepare


PEERS: list[Peer] = [
    Peer("troth-remote", "troth remote", "troth-remote", troth_peer("remote"), needs_troth_server=True),
    Peer("troth-local-file", "troth local (file)", "troth-remote", troth_peer("local-file")),
    Peer("troth-local-memory", "troth local (memory)", "troth-local-memory", troth_peer("local-memory")),
    Peer("dbos-sqlite", f"DBOS {DBOS_VERSION} SQLite", "troth-remote", dbos_peer("sqlite")),
    Peer("dbos-postgres", f"DBOS {DBOS_VERSION} PostgreSQL", "troth-remote", dbos_peer("postgres")),
    Peer("restate", f"Restate {RESTATE_SERVER_VERSION}", "troth-remote", restate_prepare),
    Peer(
        "resonate-local",
        f"resonate-sdk {RESONATE_SDK_VERSION} local",
        "troth-local-memory",
        resonate_peer("local"),
    ),
    Peer(
        "resonate-remote",
        f"resonate-sdk {RESONATE_SDK_VERSION} → troth serve",
        "troth-remote",
        resonate_peer("remote"),
        needs_troth_server=True,
    ),
]

BY_KEY = {peer.key: peer for peer in PEERS}
TROTH_KEYS = ("troth-remote", "troth-local-file", "troth-local-memory")
