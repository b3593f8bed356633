"""The load-balancer way to scale out: HAProxy (``docs/operations/haproxy.cfg``, unchanged) in front of two
replicas; a worker and a client know only the balancer's URL. Workflows complete, every step once, also
after one replica is killed (the balancer drops it on its failing ``/ready``; the worker's stream
reconnects through the balancer to the other)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from helpers import free_port, wait_until
from stores import REQUIRED, new_database, require_postgres

from .replicas import Replicas
from .test_workflows import SERVER_ARGS, Workers, _check_exactly_once, _run_workflows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CONFIG = Path(__file__).parents[2] / "docs" / "operations" / "haproxy.cfg"


class _Balancer:
    """Stands in for a ``Replicas`` in ``_run_workflows`` and ``Workers``: one URL, the balancer's."""

    def __init__(self, url: str) -> None:
        self.servers = [type("S", (), {"url": url})()]


def test_workflows_through_haproxy_survive_a_replica_kill(tmp_path: Path) -> None:
    require_postgres()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        reason = "haproxy is not installed (make services installs Debian's package)"
        if REQUIRED:
            pytest.fail(f"TROTH_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    with Replicas(2, new_database(), SERVER_ARGS) as replicas:
        port = free_port()
        env = dict(
            os.environ,
            TROTH_LB_LISTEN=f"127.0.0.1:{port}",
            TROTH_REPLICA_A=replicas[0].url.removeprefix("http://"),
            TROTH_REPLICA_B=replicas[1].url.removeprefix("http://"),
        )
        log = (tmp_path / "haproxy.log").open("wb")
        proxy = subprocess.Popen([haproxy, "-f", str(CONFIG), "-db"], env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                try:
                    return httpx.get(f"{url}/ready", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, 30, "HAProxy to serve /ready")
            balancer = _Balancer(url)
            workers = Workers(balancer, tmp_path, 2)  # type: ignore[arg-type]
            try:
                results = _run_workflows(balancer, 20, prefix="lb")  # type: ignore[arg-type]
                replicas[0].kill()
                results |= _run_workflows(balancer, 20, prefix="lb", first=20)  # type: ignore[arg-type]
                _check_exactly_once(workers, results, 40)
            finally:
                workers.close()
        finally:
            proxy.terminate()
            proxy.wait(10)
            log.close()
