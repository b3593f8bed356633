"""Workflows over several replicas on one PostgreSQL, with real worker processes (SDK, several URLs each).

* Three replicas, three workers (each attached to a different replica first), 200 workflows of ten steps
  started through every replica: all complete, and every step ran exactly once (a side-effect log).
* The same while one replica is killed with SIGKILL: its workers and clients fail over, every workflow
  completes, nothing runs twice.
* PostgreSQL (a throwaway cluster) crashes and restarts under load: every acknowledged write is there
  afterwards, the replicas recover without a restart of their own, every workflow completes once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from helpers import envelope, now_ms, wait_until
from pgcluster import Cluster
from stores import new_database, require_postgres
from troth import Troth

from .replicas import Replicas

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

WORKER = Path(__file__).with_name("cluster_worker.py")
STEPS = 10
SERVER_ARGS = ["--retry-timeout", "2000"]  # a message lost with a killed replica is re-sent within 2 s


class Workers:
    def __init__(self, replicas: Replicas, directory: Path, count: int) -> None:
        self.effects = directory / "effects.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        urls = [s.url for s in replicas.servers]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
        for n in range(count):
            mine = urls[n % len(urls) :] + urls[: n % len(urls)]  # attached to replica n first
            with (directory / f"worker-{n}.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(WORKER),
                            "--url",
                            ",".join(mine),
                            "--pid",
                            f"worker-{n}",
                            "--effects",
                            str(self.effects),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        env=env,
                    )
                )
        wait_until(lambda: self.lines().count("ready") >= count, 60, "the workers to be ready")

    def lines(self) -> list[str]:
        try:
            return [line.split(" ", 1)[0] for line in self.effects.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def steps(self) -> Counter[tuple[int, int]]:
        found: Counter[tuple[int, int]] = Counter()
        for line in self.effects.read_text().splitlines():
            parts = line.split()
            if parts[0] == "step":
                found[(int(parts[1]), int(parts[2]))] += 1
        return found

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path


def _run_workflows(
    replicas: Replicas,
    count: int,
    *,
    prefix: str,
    first: int = 0,
    during: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """Start ``count`` workflows, spread over the replicas (each client knows them all, its own first),
    and wait for every result; ``during(done)`` is called as results come in."""
    urls = [s.url for s in replicas.servers]

    async def main() -> dict[int, int]:
        clients = [
            Troth(",".join(urls[k:] + urls[:k]), group=f"starter-{k}", send_only=True)
            for k in range(len(urls))
        ]
        results: dict[int, int] = {}
        slots = asyncio.Semaphore(24)

        async def one(n: int) -> None:
            async with slots:
                client = clients[n % len(clients)].options(target="poll://any@cw")
                results[n] = await client.rpc(f"{prefix}-{n}", "workflow", n).result()
            if during is not None:
                await asyncio.to_thread(during, len(results))

        try:
            # generous: one to three minutes on a quiet machine, much longer when others load it
            await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(first, first + count))), 1200)
        finally:
            for client in clients:
                await client.stop()
        return results

    return asyncio.run(main())


def _check_exactly_once(
    workers: Workers, results: dict[int, int], count: int, replicas: Replicas | None = None
) -> None:
    """Workflows ``0 … count-1`` all returned their result, and each of their steps ran exactly once (a
    failure names the workers that ran a step twice and the replicas' warnings, to tell why)."""
    assert results == {n: sum(range(STEPS)) for n in range(count)}
    steps = workers.steps()
    assert set(steps) == {(n, i) for n in range(count) for i in range(STEPS)}
    twice = {key: times for key, times in steps.items() if times > 1}
    if twice:
        runs = [
            line
            for line in workers.effects.read_text().splitlines()
            if line.startswith("step ") and tuple(map(int, line.split()[1:3])) in twice
        ]
        warnings = [
            line
            for server in (replicas.servers if replicas is not None else [])
            for line in server.stderr.splitlines()
            if "WARNING" in line or "ERROR" in line
        ]
        raise AssertionError(
            f"steps that ran more than once: {twice}; runs: {runs}; warnings: {warnings[-20:]}"
        )


@pytest.fixture
def three(directory: Path) -> Iterator[tuple[Replicas, Workers]]:
    require_postgres()
    with Replicas(3, new_database(), SERVER_ARGS) as replicas:
        workers = Workers(replicas, directory, 3)
        try:
            yield replicas, workers
        finally:
            workers.close()


def test_200_workflows_over_three_replicas_run_every_step_once(three: tuple[Replicas, Workers]) -> None:
    replicas, workers = three
    results = _run_workflows(replicas, 200, prefix="wf")
    _check_exactly_once(workers, results, 200, replicas)
    for server in replicas.servers:
        assert "Traceback" not in server.stderr, server.stderr[-3000:]


def test_a_replica_killed_under_load_loses_nothing(three: tuple[Replicas, Workers]) -> None:
    replicas, workers = three
    killed = threading.Event()

    def kill_once(done: int) -> None:
        if done >= 40 and not killed.is_set():
            killed.set()
            replicas[1].kill()

    results = _run_workflows(replicas, 200, prefix="kill", during=kill_once)
    assert killed.is_set() and replicas[1].returncode is not None
    _check_exactly_once(workers, results, 200, replicas)
    for proc in workers.procs:
        assert proc.poll() is None  # every worker is still serving (it failed over)


def test_postgresql_restarted_under_load_loses_no_acknowledged_write(directory: Path) -> None:
    cluster = Cluster()
    try:
        cluster.start()
        with Replicas(2, cluster.createdb("troth"), SERVER_ARGS) as replicas:
            workers = Workers(replicas, directory, 2)
            try:
                acked: list[str] = []
                stop = threading.Event()
                writer = threading.Thread(target=_write_until, args=(replicas, acked, stop))
                writer.start()
                restarted = threading.Event()

                def restart_once(done: int) -> None:
                    if done >= 20 and not restarted.is_set():
                        restarted.set()
                        cluster.stop(immediate=True)  # a crash: no checkpoint, WAL replay on start
                        cluster.start()

                try:
                    results = _run_workflows(replicas, 60, prefix="pg", during=restart_once)
                finally:
                    stop.set()
                    writer.join(60)
                assert restarted.is_set()
                _check_exactly_once(workers, results, 60, replicas)
                for server in replicas.servers:
                    wait_until(lambda s=server: s.ready_status() == 200, 60, "the replicas to be ready")
                    assert server.returncode is None
                missing = [id for id in acked if replicas[0].post("promise.get", {"id": id})[0] != 200]
                assert acked and not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
            finally:
                workers.close()
    finally:
        cluster.close()


def _write_until(replicas: Replicas, acked: list[str], stop: threading.Event) -> None:
    """Create promises one after another through every replica; record those answered 200."""
    n = 0
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            n += 1
            id = f"acked-{n}"
            body = envelope(
                "promise.create", {"id": id, "timeoutAt": now_ms() + 3_600_000, "param": {}, "tags": {}}
            )
            try:
                response = http.post(f"{replicas[n % 2].url}/", json=body)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                acked.append(id)
            else:
                assert response.status_code == 503, response.text
