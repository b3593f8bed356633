"""Local mode on a SQLite file resumes a killed process's workflow as soon as the program starts again
(docs/getting-started.md#local-restart): the engine, the only user of its file, ends the leases the dead
process held instead of waiting out their ttl. Real processes (``local_program.py``), killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sdk.support import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROGRAM = Path(__file__).with_name("local_program.py")


def lines(path: Path, what: str) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] == what]


def start(db: Path, effects: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TROTH_URL", None)
    return subprocess.Popen([sys.executable, str(PROGRAM), str(db), "job-1", str(effects)], env=env)


async def test_a_killed_local_program_resumes_at_once_when_restarted(tmp_path: Path) -> None:
    db, effects = tmp_path / "app.db", tmp_path / "effects.log"
    first = start(db, effects)
    try:
        await until(lambda: lines(effects, "hang"), 90, "the first process to reach the hanging step")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    second = start(db, effects)
    try:
        # The dead process held its task under a 10-minute lease; the deadline here is far shorter, so
        # the workflow can only finish if the restarted engine ended that lease when it opened the file.
        await until(lambda: lines(effects, "done"), 90, "the restarted program to finish the workflow")
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert lines(effects, "done") == [f"done 3 {second.pid}"]
    assert lines(effects, "one") == [f"one {first.pid}"]  # the settled step is not run again
    assert lines(effects, "hang") == [f"hang {first.pid}"]
    assert lines(effects, "two") == [f"two {second.pid}"]
