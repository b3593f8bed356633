"""Fixtures for the dashboard's browser tests: Debian's ``chromium`` driven by Playwright (``make
services`` installs it; ``playwright install`` cannot download browsers here), a real ``troth serve`` and
a real worker process. Screenshots go to ``TROTH_ARTIFACTS`` (default ``test-artifacts/dashboard``)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from helpers import DEADLINE, ServerProcess, now_ms
from stores import REQUIRED, server_store

CHROMIUM = os.environ.get("TROTH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TROTH_ARTIFACTS", "test-artifacts")) / "dashboard"
WORKER = Path(__file__).with_name("review_worker.py")

expect.set_options(timeout=60_000)  # what a page shows, on a loaded machine: a deadline, not a sleep


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser per test module. Not per session: Playwright's sync API keeps an event loop running
    on this thread while it is open, which would break the async tests that follow in the same process."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        reason = f"{CHROMIUM} is not installed (make services installs Debian's chromium)"
        if REQUIRED:
            pytest.fail(f"TROTH_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(60_000)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()
    csp = [e for e in errors if "Content Security Policy" in e]
    assert not csp, f"the page broke its own Content-Security-Policy: {csp}"


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class Worker:
    """The review worker in a child process, connected to ``url``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        env = dict(os.environ, TROTH_URL=url)
        if token:
            env["TROTH_TOKEN"] = token
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.strip() == "ready", f"the worker did not start: {line!r}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(DEADLINE)


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A fresh server on the test store (in-memory SQLite, or PostgreSQL with TROTH_TEST_STORE=postgres)."""
    with ServerProcess(server_store()) as proc:
        yield proc


@pytest.fixture
def worker(server: ServerProcess) -> Iterator[Worker]:
    w = Worker(server.url)
    yield w
    w.close()


def invocation(func: str, *args: Any) -> str:
    text = json.dumps({"func": func, "args": list(args), "kwargs": {}, "version": 1})
    return base64.b64encode(text.encode()).decode()


def start_review(server: ServerProcess, id: str, order: str, headers: dict[str, str] | None = None) -> None:
    """Start ``review(order)`` on group ``dash`` as ``troth invoke`` does: a root promise with a target."""
    data = {
        "id": id,
        "timeoutAt": now_ms() + 3_600_000,
        "param": {"data": invocation("review", order)},
        "tags": {
            "resonate:origin": id,
            "resonate:branch": id,
            "resonate:parent": id,
            "resonate:scope": "global",
            "resonate:target": "poll://any@dash",
        },
    }
    head = {"auth": headers["Authorization"].removeprefix("Bearer ")} if headers else None
    status, body = server.post("promise.create", data, head)
    assert status == 200, body
