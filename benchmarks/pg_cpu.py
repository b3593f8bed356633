"""CPU per workflow on PostgreSQL: what PostgreSQL, the server and the runner spend, from ``/proc``.

One ``troth serve`` on a scratch PostgreSQL database; one runner process (the scale-out benchmark's:
workflows of 10 ``ctx.run`` steps, 16 in flight) after a warm-up. Around the measured run it reads the
user+system CPU time of the server, the runner, the PostgreSQL backends of the scratch database (their
command line names it) and every ``postgres`` process (the backends plus the WAL writer, checkpointer
and the rest — and any other database's work on a shared machine). CPU time, unlike wall time, hardly
depends on what else the machine runs, so before/after comparisons hold on a busy machine. It also
prints the group-commit counters of the server's ``/metrics`` (units per committed batch).

``--fill N`` first writes N settled promises (a tenth of them with a completed task) and analyzes the
tables, as a database with some history would be: PostgreSQL's plans — and what they cost to make —
depend on the tables' sizes.

Run: ``python -m benchmarks.pg_cpu --workflows 200 [--fill 100000]`` (Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.server import scratch_store, start_server

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, system: bool | None = None) -> float:
    """User+system CPU seconds of ``pid`` (0 when it is gone); only system time if ``system``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[12]) if system else int(fields[11]) + int(fields[12])
    return ticks / _TICK


def _postgres() -> dict[int, str]:
    """Every ``postgres`` process: pid → command line."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return out


def _sample(db: str) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """CPU seconds of every ``postgres`` process, of the backends of ``db``, and their system part."""
    procs = _postgres()
    every = {pid: _cpu(pid) for pid in procs}
    ours = {pid: every[pid] for pid, cmd in procs.items() if f" {db} " in cmd}
    return every, ours, {pid: _cpu(pid, system=True) for pid in ours}


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def _store_metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'troth_store\{measure="(\w+)"\} ([0-9.e+]+)', text)
    }


async def _fill(url: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO promises (id, state, param, value, tags, timeout_at, created_at, settled_at, "
            "origin) SELECT 'fill-' || g, 'resolved', '{}', '{}', "
            "jsonb_build_object('resonate:origin', 'fill-' || g), 10000000000000, 1, 2, 'fill-' || g "
            "FROM generate_series(1, $1) AS g",
            n,
        )
        await conn.execute(
            "INSERT INTO tasks (id, state, version, rev) SELECT 'fill-' || g, 'fulfilled', 1, 1 "
            "FROM generate_series(1, $1) AS g",
            n // 10,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--fill", type=int, default=0, help="settled promises written first")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    ns = argparse.Namespace(store="postgres", pg_url=args.pg_url)
    with tempfile.TemporaryDirectory() as tmp, scratch_store(ns, tmp) as url:
        db = url.rsplit("/", 1)[1]
        server, port = start_server(url, "--pool-size", "10")
        try:
            if args.fill:
                asyncio.run(_fill(url, args.fill))
            warm = [sys.executable, "-m", "benchmarks.cluster", "--runner", f"http://127.0.0.1:{port}"]
            subprocess.run([*warm, "--workflows", "20"], check=True, stdout=subprocess.DEVNULL)
            metrics0 = _store_metrics(port)
            every0, ours0, sys0 = _sample(db)
            server0 = _cpu(server.pid)
            t0 = time.perf_counter()
            runner = subprocess.Popen([*warm, "--workflows", str(args.workflows)], stdout=subprocess.PIPE)
            # the runner's own CPU: its children's times, read once it has exited
            out, _ = runner.communicate(timeout=900)
            elapsed = time.perf_counter() - t0
            every1, ours1, sys1 = _sample(db)
            server1 = _cpu(server.pid)
            metrics1 = _store_metrics(port)
        finally:
            server.terminate()
            server.wait(15)
    assert runner.returncode == 0, out
    result = json.loads(out.decode().strip().splitlines()[-1])
    n = args.workflows
    batches = metrics1.get("batches_committed", 0) - metrics0.get("batches_committed", 0)
    batched = metrics1.get("batched_units", 0) - metrics0.get("batched_units", 0)
    print(f"{n} workflows of 10 steps, 16 in flight, one replica: {n / result['seconds']:.1f}/s (wall)")
    print(
        f"PostgreSQL backends of the database: {1000 * _delta(ours0, ours1) / n:6.2f} ms CPU per workflow "
        f"({1000 * _delta(sys0, sys1) / n:.2f} of it system time)"
    )
    print(
        f"every postgres process:              {1000 * _delta(every0, every1) / n:6.2f} ms CPU per workflow"
    )
    print(f"troth server:                        {1000 * (server1 - server0) / n:6.2f} ms CPU per workflow")
    print(
        f"wall {elapsed:.1f} s; group commit: {batches:.0f} batches of {batched / max(batches, 1):.1f} units"
    )


if __name__ == "__main__":
    main()
