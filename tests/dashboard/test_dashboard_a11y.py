"""An accessibility check of every dashboard page (issue 11): axe-core (the copy shipped by the
``axe-playwright-python`` package) runs in the real browser on each page with data in it; no page may
have a violation of impact ``critical`` or ``serious``."""

from __future__ import annotations

import json

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from helpers import ServerProcess, now_ms

from .conftest import ARTIFACTS, Worker, start_review


def test_every_page_has_no_critical_accessibility_issue(
    page: Page, server: ServerProcess, worker: Worker
) -> None:
    start_review(server, "order-3", "o-3")
    server.post("promise.create", {"id": "loose-1", "timeoutAt": now_ms() + 60_000})
    status, body = server.post(
        "schedule.create",
        {
            "id": "nightly",
            "cron": "0 3 * * *",
            "promiseId": "nightly-{{.timestamp}}",
            "promiseTimeout": 60_000,
            "promiseTags": {"resonate:target": "poll://any@dash"},
        },
    )
    assert status == 200, body
    assert server.post("limit.set", {"group": "idle", "concurrency": 1})[0] == 200
    for n in range(2):
        data = {
            "id": f"idle-{n}",
            "timeoutAt": now_ms() + 60_000,
            "tags": {"resonate:target": "poll://any@idle"},
        }
        assert server.post("promise.create", data)[0] == 200
    axe = Axe()
    found: dict[str, list[dict[str, object]]] = {}
    pages = {
        "/ui": "Running workflows",
        "/ui/promises": "order-3",
        "/ui/promise?id=order-3:2": "Call tree",
        "/ui/tasks": "order-3",
        "/ui/schedules": "nightly",
        "/ui/workers": "dash",
        "/ui/queues": "@idle",
    }
    for path, text in pages.items():
        page.goto(f"{server.url}{path}")
        expect(page.locator("#content")).to_contain_text(text)
        results = axe.run(page)
        bad = [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n["target"] for n in v["nodes"]],
            }
            for v in results.response["violations"]
            if v["impact"] in ("critical", "serious")
        ]
        if bad:
            found[path] = bad
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "axe.json").write_text(json.dumps(found, indent=2))
    assert found == {}, json.dumps(found, indent=2)
