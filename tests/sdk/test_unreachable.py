"""A worker or client that cannot reach its server (issue 10, item 6): one clear line, then retries with
backoff, bounded by ``unreachable_timeout`` when the user asks; ``SyncTroth`` closes cleanly.

Real processes: the worker and the scripts run as subprocesses (so what they print at exit, such as
aiohttp's "Unclosed client session", is seen), and the server is a real ``troth serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, free_port, wait_until
from troth import Troth
from troth.sdk.errors import ConnectorError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CANNOT = "cannot reach the server at"


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}


def run_script(path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


WORKER = """
import asyncio, logging, sys
from troth import Context, Troth
from troth.sdk.errors import ConnectorError

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
url, bound, ready = sys.argv[1], sys.argv[2], sys.argv[3]

async def main() -> None:
    # -X dev (for unclosed resources) also reports callbacks slower than 0.1 s: a loaded machine's doing,
    # not the worker's, and not the lines these tests count.
    asyncio.get_running_loop().slow_callback_duration = 3600
    troth = Troth(url, group="far", unreachable_timeout=None if bound == "none" else float(bound))

    @troth.register
    async def double(ctx: Context, n: int) -> int:
        return 2 * n

    try:
        async with troth:
            open(ready, "w").close()
            await asyncio.Event().wait()
    except ConnectorError as exc:
        print(f"gave up: {exc}", file=sys.stderr)
        sys.exit(3)

asyncio.run(main())
"""


def test_a_worker_gives_up_after_its_bound_with_one_line(tmp_path: Path) -> None:
    worker = script(tmp_path, "worker.py", WORKER)
    port = free_port()
    started = time.monotonic()
    done = run_script(worker, f"http://127.0.0.1:{port}", "3", str(tmp_path / "ready"))
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started >= 3  # it did retry for the time it was given
    lines = done.stderr.splitlines()
    assert sum(CANNOT in line for line in lines) == 2, done.stderr  # the warning, and the final error
    assert lines[0].startswith("WARNING troth.sdk: troth: cannot reach the server at"), done.stderr
    assert "retrying with backoff for up to 3 s" in lines[0]
    assert lines[-1].startswith(f"gave up: cannot reach the server at http://127.0.0.1:{port} for 3 s")
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr


def test_a_worker_waits_for_its_server_and_serves_once_it_is_up(tmp_path: Path) -> None:
    worker = script(tmp_path, "worker.py", WORKER)
    port = free_port()
    ready = tmp_path / "ready"
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", str(worker), f"http://127.0.0.1:{port}", "none", str(ready)],
        stdout=log,
        stderr=log,
        env=clean_env(),
    )
    try:
        stderr = tmp_path / "worker.log"
        wait_until(lambda: CANNOT in stderr.read_text(), 30, "the worker's one line")
        with ServerProcess(tmp_path / "troth.db", args=["--port", str(port)]) as server:
            wait_until(ready.exists, 60, "the worker to connect once the server is up")

            async def call() -> int:
                async with Troth(server.url, group="caller", send_only=True) as caller:
                    return int(await caller.options(target="far").rpc("far-1", "double", 21))

            assert asyncio.run(call()) == 42
            text = stderr.read_text()  # (stopping the server below is another outage)
        assert text.count(CANNOT) == 1, text  # one line for the whole outage, not one per attempt
        assert "reached the server at" in text and "again after" in text
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def test_a_client_gives_up_after_its_bound(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="troth.sdk")
    port = free_port()
    troth = Troth(f"http://127.0.0.1:{port}", send_only=True, unreachable_timeout=1.5)
    async with troth:
        with pytest.raises(ConnectorError, match=r"promise.get: cannot reach the server at .* for \d+ s"):
            await troth.promises.get("anything")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and CANNOT in r.getMessage()]
    retries = [r for r in caplog.records if "still unreachable" in r.getMessage()]
    assert len(warnings) == 1 and retries  # it retried, and said so once


def test_unreachable_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROTH_UNREACHABLE_TIMEOUT", "2.5")
    transport = Troth("http://127.0.0.1:9", send_only=True)._worker.transport
    assert getattr(transport, "unreachable_timeout", None) == 2.5
    monkeypatch.setenv("TROTH_UNREACHABLE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TROTH_UNREACHABLE_TIMEOUT"):
        Troth("http://127.0.0.1:9", send_only=True)
    with pytest.raises(ValueError, match="unreachable_timeout"):
        Troth("http://127.0.0.1:9", send_only=True, unreachable_timeout=-1)


SYNC = """
import sys
from troth import Context, SyncTroth
from troth.sdk.errors import ConnectorError

url, how = sys.argv[1], sys.argv[2]

async def hi(ctx: Context, n: int) -> int:
    return n + 1

if how == "with":
    with SyncTroth(url, group="sync") as troth:
        troth.register(hi)
        print(troth.run("sync-with", hi, 1))
elif how == "never-closed":
    troth = SyncTroth(url, group="sync")
    troth.register(hi)
    print(troth.run("sync-open", hi, 2))
    print(troth.promises.get("sync-open")["state"])
elif how == "requests-only":  # never started: promises.* open a connection all the same
    troth = SyncTroth(url, group="sync")
    troth.promises.create("sync-latent", 60)
    print(troth.promises.get("sync-latent")["state"])
    troth.close()
elif how == "unreachable":
    try:
        with SyncTroth(url, group="sync", unreachable_timeout=1) as troth:
            print("never")
    except ConnectorError as exc:
        print(f"gave up: {exc}")
print("exit")
"""


@pytest.mark.parametrize("how", ["with", "never-closed", "requests-only"])
def test_sync_troth_closes_cleanly(tmp_path: Path, how: str) -> None:
    sync = script(tmp_path, "sync.py", SYNC)
    with ServerProcess(tmp_path / "troth.db") as server:
        done = run_script(sync, server.url, how)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "exit"
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_sync_troth_on_an_unreachable_server_closes_cleanly(tmp_path: Path) -> None:
    sync = script(tmp_path, "sync.py", SYNC)
    done = run_script(sync, f"http://127.0.0.1:{free_port()}", "unreachable")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("gave up: cannot reach the server")
    assert done.stdout.splitlines()[-1] == "exit"
    assert done.stderr.count(CANNOT) == 1, done.stderr
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
