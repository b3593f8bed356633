"""The official TypeScript SDK's scenarios of ``test_official_ts_sdk.py`` again, with a token: the server
runs with JWT authentication, the SDK gets the token through its constructor (``new Resonate({token})``,
which also puts it on the SSE request), troth workers through ``TROTH_TOKEN``, and the test's own reads
use an admin token. The scenario code is the same; only ``server`` differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_official_ts_sdk as scenarios
from .conftest import ProcessGroup, Server, start_server

pytestmark = scenarios.pytestmark
node = scenarios.node
ts_sdk = scenarios.ts_sdk
ts_procs = scenarios.ts_procs


@pytest.fixture
def server(ts_procs: ProcessGroup, tmp_path: Path) -> Server:
    return start_server(ts_procs, scenarios.server_helper_python(), tmp_path / "troth.db", auth=True)


globals().update({name: test for name, test in vars(scenarios).items() if name.startswith("test_")})
