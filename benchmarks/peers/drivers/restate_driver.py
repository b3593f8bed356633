"""Restate (npm ``@restatedev/restate-server`` + PyPI ``restate-sdk`` on hypercorn) in the peer benchmark.

Run by the harness with the Restate SDK's cached venv (it does not import troth)::

    python restate_driver.py --restate-server PATH/restate-server --workdir DIR

Starts a single-node ``restate-server`` (its defaults — RocksDB with fsync'd WAL — on free loopback ports,
data under DIR, telemetry off), serves ``restate_service:app`` with hypercorn (one worker process),
registers it, and calls the handlers through the ingress over HTTP, one request per workflow with the
workflow id as ``idempotency-key`` (what makes a Restate invocation run once per id, like a troth or DBOS
workflow id). E: two hypercorn processes sharing one listening socket serve ``Crash``; the one running the
invocation is killed and Restate retries it (its default retry policy) on the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # ``benchmarks`` (stdlib-only modules)

from benchmarks.peers.workloads import (
    CrashRig,
    Driver,
    driver_main,
    stop_process,
)

HERE = Path(__file__).resolve().parent
SKIP = ("Content-Type",)  # a handler without input refuses any content-type, even the one aiohttp adds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_http(url: str, deadline: float, proc: asyncio.subprocess.Process, what: str) -> None:
    end = time.monotonic() + deadline
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if proc.returncode is not None:
                raise RuntimeError(f"{what} exited ({proc.returncode}) before answering {url}")
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not answer {url} within {deadline:.0f} s")
            await asyncio.sleep(0.05)


async def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )


class Restate:
    """A restate-server and the hypercorn processes serving deployments to it."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.procs: list[asyncio.subprocess.Process] = []
        self.ingress = ""
        self.admin = ""

    async def start(self) -> None:
        """Start the server on free loopback ports (three tries: a port can be taken between the probe
        and the bind) and wait until its admin API and ingress answer."""
        for attempt in range(3):
            ports = [free_port() for _ in range(3)]
            env = {
                **os.environ,
                "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ports[0]}",
                "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{ports[1]}",
                "RESTATE_BIND_ADDRESS": f"127.0.0.1:{ports[2]}",
                "RESTATE_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1",
                "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
            }
            # (It still asks GitHub once for its latest release; with no network that fails at once.)
            data = self.workdir / f"data-{attempt}"
            argv = [self.binary, "--no-logo", "--listen-mode", "tcp", "--base-dir", str(data)]
            server = await spawn(argv, self.workdir / "restate-server.log", env)
            self.procs.append(server)
            self.ingress = f"http://127.0.0.1:{ports[0]}"
            self.admin = f"http://127.0.0.1:{ports[1]}"
            try:
                await wait_http(self.admin + "/health", 60, server, "restate-server")
                await wait_http(self.ingress + "/restate/health", 60, server, "restate-server ingress")
                return
            except RuntimeError:  # exited early (a port taken?): try other ports
                if attempt == 2:
                    raise

    async def deploy(self, app: str, processes: int) -> None:
        """Serve ``restate_service:<app>`` with hypercorn and register it.

        ``processes`` hypercorn processes (``--workers 0``: each serves in its own process, no master)
        accept on one listening socket made here: when one is killed, the others keep the address.
        (One hypercorn with ``--workers 2`` is no standby: its master stops every worker when one dies.)
        """
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        listener.set_inheritable(True)
        port = int(listener.getsockname()[1])
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        argv = [sys.executable, "-m", "hypercorn", "--bind", f"fd://{listener.fileno()}", "--workers", "0"]
        argv += ["--log-level", "WARNING", f"restate_service:{app}"]
        for i in range(processes):
            with open(self.workdir / f"hypercorn-{app}-{i}.log", "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=env,
                    pass_fds=(listener.fileno(),),
                )
            self.procs.append(proc)
        listener.close()  # the children hold it
        uri = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:  # discovery waits in the socket's backlog until a hypercorn is serving
                async with session.post(self.admin + "/deployments", json={"uri": uri}) as resp:
                    if resp.status < 300:
                        return
                    text = await resp.text()
                if any(p.returncode is not None for p in self.procs) or time.monotonic() > end:
                    raise RuntimeError(f"cannot register {uri}: {text[:300]}")
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        for proc in reversed(self.procs):
            await stop_process(proc)


class RestateSystem:
    def __init__(self, ingress: str, session: aiohttp.ClientSession) -> None:
        self.ingress = ingress
        self.session = session

    async def call(self, handler: str, id: str, arg: Any = None) -> Any:
        headers = {"idempotency-key": id}
        body: bytes | None = None  # (aiohttp would label even b"" application/octet-stream)
        if arg is not None:  # a handler without input refuses a content-type
            body = json.dumps(arg).encode()
            headers["content-type"] = "application/json"
        url = f"{self.ingress}/Bench/{handler}"
        async with self.session.post(url, data=body, headers=headers, skip_auto_headers=SKIP) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"{handler} answered {resp.status}: {text[:200]}")
            return json.loads(text)

    async def one_step(self, id: str) -> int:
        return int(await self.call("one_step", id))

    async def steps(self, id: str, n: int) -> int:
        return int(await self.call("steps", id, n))

    async def fanout(self, id: str, n: int) -> int:
        return int(await self.call("fanout", id, n))

    async def sleep_until(self, id: str, due: float) -> float:
        return float(await self.call("sleeper", id, due))


@contextlib.asynccontextmanager
async def system(args: argparse.Namespace, workdir: Path) -> AsyncIterator[RestateSystem]:
    restate = Restate(args.restate_server, workdir)
    try:
        await restate.start()
        await restate.deploy("app", processes=1)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
            yield RestateSystem(restate.ingress, s)
    finally:
        await restate.close()


class RestateCrashRig:
    """A restate-server and a two-worker hypercorn for ``Crash``: Restate retries on the surviving worker."""

    restart = False

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.restate: Restate | None = None

    async def prepare(self, workdir: Path) -> None:
        self.restate = Restate(self.binary, workdir)
        await self.restate.start()
        await self.restate.deploy("crash_app", processes=2)

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        assert self.restate is not None
        body = {"marker": str(marker), "done": str(done)}
        async with aiohttp.ClientSession() as session:
            url = f"{self.restate.ingress}/Crash/crashy/send"
            async with session.post(url, json=body, headers={"idempotency-key": id}) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"send answered {resp.status}: {(await resp.text())[:200]}")

    async def after_kill(self) -> None:
        return None

    async def close(self) -> None:
        if self.restate is not None:
            await self.restate.close()


def rig(args: argparse.Namespace) -> CrashRig:
    return RestateCrashRig(args.restate_server)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restate-server", required=True, help="the restate-server binary")


def info(args: argparse.Namespace) -> dict[str, Any]:
    import subprocess

    server = subprocess.run([args.restate_server, "--version"], capture_output=True, text=True, timeout=30)
    return {
        "version": server.stdout.strip().removeprefix("restate-server "),
        "sdk": f"restate-sdk {importlib.metadata.version('restate-sdk')}, "
        f"hypercorn {importlib.metadata.version('hypercorn')}",
        "store": "restate-server single node, defaults (RocksDB, WAL fsync)",
    }


def main() -> int:
    return driver_main(Driver(name="Restate", system=system, rig=rig, add_arguments=add_arguments, info=info))


if __name__ == "__main__":
    sys.exit(main())
