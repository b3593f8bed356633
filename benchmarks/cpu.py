"""CPU time per workflow, client and server: the figure a loaded machine does not distort.

Wall times on the project's shared 2-core machines swing by 2–5× with the load; the CPU a workflow costs
barely moves. This starts a real ``troth serve`` on a fresh SQLite file (WAL, ``synchronous=FULL``), runs
the peer benchmark's troth workflows (``benchmarks/peers/drivers/troth_driver.py``) one after another in
this process as client and worker, and reports per workflow the server's CPU (``utime + stime`` from
``/proc``), this process's CPU, the wall time and the requests the SDK sent, for A (1 step), B (10
sequential steps), C (fan-out of 100 and of 1,000), and the end-to-end lateness of D (a 1 s durable
sleep, p50 and max over ``--sleeps``).

To compare with another version of troth, put its source first on the path; the benchmark code stays
this checkout's::

    python -m benchmarks.cpu
    git archive <commit> | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python -m benchmarks.cpu

Interleave the two a few times: CPU time still varies by ±15 % under heavy load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.peers.drivers.troth_driver import fanout, one_step, register, sleeper, steps
from benchmarks.server import start_server
from troth import Troth
from troth.protocol.messages import Answer, Request
from troth.sdk.transport import HttpTransport


class CountingTransport(HttpTransport):
    """The SDK's own HTTP transport, counting the requests it sends (heartbeats and all)."""

    sent = 0

    async def request(self, request: Request[Any]) -> Answer[Any]:
        self.sent += 1
        return await super().request(request)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def measure(url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    transport = CountingTransport(url)
    troth = register(Troth(url, transport=transport, log_level=logging.WARNING))
    async with troth:
        await troth.run(f"warm-{uuid.uuid4().hex}", fanout, 10)
        cases: list[tuple[str, Any, tuple[Any, ...], int]] = [
            ("A 1-step", one_step, (), args.a_runs),
            ("B 10 steps", steps, (10,), args.b_runs),
            ("C fan-out 100", fanout, (100,), args.c_runs),
            ("C fan-out 1000", fanout, (1000,), 1),
        ]
        for name, fn, fn_args, runs in cases:
            server0, client0, wall0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
            sent0 = transport.sent
            for _ in range(runs):
                await troth.run(f"cpu-{uuid.uuid4().hex}", fn, *fn_args)
            out[name] = {
                "server_cpu_ms": round((cpu_seconds(server_pid) - server0) / runs * 1000, 2),
                "client_cpu_ms": round((time.process_time() - client0) / runs * 1000, 2),
                "wall_ms": round((time.perf_counter() - wall0) / runs * 1000, 2),
                "requests": round((transport.sent - sent0) / runs, 1),
            }
        late = []
        for _ in range(args.sleeps):
            late.append(await troth.run(f"d-{uuid.uuid4().hex}", sleeper, time.time() + 1.0))
        late.sort()
        out["D lateness"] = {
            "p50_ms": round(late[len(late) // 2] * 1000, 2),
            "max_ms": round(late[-1] * 1000, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a-runs", type=int, default=50)
    parser.add_argument("--b-runs", type=int, default=20)
    parser.add_argument("--c-runs", type=int, default=5)
    parser.add_argument("--sleeps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="troth-cpu-") as tmp:
        proc, port = start_server(str(Path(tmp) / "cpu.db"), log=Path(tmp) / "server.log")
        try:
            result = asyncio.run(measure(f"http://127.0.0.1:{port}", proc.pid, args))
        finally:
            proc.terminate()
            proc.wait()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
