"""The cross-SDK scenarios of ``test_cross_sdk.py`` (troth and official Python workers calling each
other) again, against a server with JWT authentication; every client holds a token. The scenario code
is the same; only ``server`` differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_cross_sdk as scenarios
from .conftest import ProcessGroup, Server, start_server

pytestmark = scenarios.pytestmark
sdk_python = scenarios.sdk_python


@pytest.fixture
def server(procs: ProcessGroup, sdk_python: Path, tmp_path: Path) -> Server:
    return start_server(procs, sdk_python, tmp_path / "troth.db", auth=True)


globals().update({name: test for name, test in vars(scenarios).items() if name.startswith("test_")})
