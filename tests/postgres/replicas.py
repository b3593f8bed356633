"""Several ``troth serve`` replicas on one PostgreSQL database, as real processes (see ``helpers``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from helpers import ServerProcess, sample

_JOINED = re.compile(r"replica ([0-9a-f]{12}) joined the cluster")


class Replicas:
    """``n`` replicas of one server on the database ``url``; a context manager that stops them all."""

    def __init__(self, n: int, url: str, args: Sequence[str] = ()) -> None:
        self.url = url
        self.servers = [ServerProcess(url, args=list(args)) for _ in range(n)]

    def __enter__(self) -> Replicas:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __getitem__(self, n: int) -> ServerProcess:
        return self.servers[n]

    @property
    def urls(self) -> str:
        """Every replica's URL, comma-separated (``TROTH_URL`` for the SDK and the CLI)."""
        return ",".join(s.url for s in self.servers)

    def live(self) -> list[ServerProcess]:
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]


def replica_id(server: ServerProcess) -> str:
    match = _JOINED.search(server.stderr)
    assert match is not None, server.stderr
    return match.group(1)


def store_measure(server: ServerProcess, measure: str) -> float:
    return sample(server.metrics(), "troth_store", {"measure": measure}) or 0.0


def lateness_count(server: ServerProcess) -> float:
    """How many timers (timeouts, retries, leases, ticks) this replica's background passes processed."""
    return sample(server.metrics(), "troth_timer_lateness_seconds_count") or 0.0
