"""A client that falls back to local mode says so in one line when it starts (issue 10, item 3)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from troth import Troth

ENV = ("TROTH_URL", "RESONATE_URL", "TROTH_HOST", "RESONATE_HOST")


def local_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "local mode" in r.getMessage()]


@pytest.fixture(autouse=True)
def no_server_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


async def test_an_implicit_local_client_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troth.sdk")
    troth = Troth()
    async with troth:
        await troth.start()  # idempotent: still one line
        await troth.options(target="default").start()
    [line] = local_lines(caplog)
    assert line.levelno == logging.WARNING
    assert "TROTH_URL" in line.getMessage() and "serves this process alone" in line.getMessage()
    assert "\n" not in line.getMessage()


async def test_an_explicit_local_client_says_it_quietly(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="troth.sdk")
    async with Troth.local():
        pass
    async with Troth(local_path=f"{tmp_path}/local.db"):
        pass
    lines = local_lines(caplog)
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]


async def test_a_remote_client_says_nothing_of_local_mode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troth.sdk")
    async with Troth("http://127.0.0.1:9", send_only=True):  # starting it opens nothing
        pass
    assert local_lines(caplog) == []
