"""The dashboard end to end in a real browser (issue 11): a real ``troth serve``, a real worker process
and Debian's chromium. Each scenario waits on what the page shows (Playwright's expectations, with the
page's default deadline), never on a sleep."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from helpers import ServerProcess, now_ms
from troth.server.ui import values

from .conftest import Worker, shot, start_review


def test_find_a_running_workflow_watch_it_grow_and_approve_it(
    page: Page, server: ServerProcess, worker: Worker
) -> None:
    page.goto(f"{server.url}/ui")
    expect(page.locator("#content")).to_contain_text("No workflow is running")
    expect(page.locator("#content")).to_have_attribute("data-feed-state", "open")
    start_review(server, "order-7", "o-7")
    # the overview is live: the new workflow appears without a reload
    link = page.get_by_role("link", name="order-7", exact=True)
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(r"/ui/promise\?id=order-7$"))
    tree = page.locator("#tree")
    expect(tree.locator('tr[data-id="order-7:1"]')).to_have_attribute("data-state", "resolved")
    waiting = tree.locator('tr[data-id="order-7:2"]')
    expect(waiting).to_have_attribute("data-state", "pending")
    expect(tree.locator("tr.node")).to_have_count(3)
    expect(tree.locator('tr[data-id="order-7:1"]')).to_contain_text("check")
    shot(page, "workflow-waiting")
    # approve the latent step from its page, with a confirmation
    waiting.get_by_role("link", name="Settle…").click()
    expect(page.locator("h1")).to_contain_text("order-7:2")
    page.locator("#resolve-value").fill('{"approved_by": "ada"}')
    dialogs: list[str] = []

    def accept(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.on("dialog", accept)
    page.locator("#resolve").click()
    expect(page.locator("#actions")).to_contain_text("order-7:2 is now resolved")
    assert dialogs and "order-7:2" in dialogs[0]
    # the tree on this page grows live: the last step appears and the workflow finishes
    tree = page.locator("#tree")
    expect(tree.locator('tr[data-id="order-7"]')).to_have_attribute("data-state", "resolved")
    expect(tree.locator('tr[data-id="order-7:3"]')).to_have_attribute("data-state", "resolved")
    expect(tree.locator('tr[data-id="order-7:3"]')).to_contain_text("o-7 shipped")
    expect(tree.locator('tr[data-id="order-7:2"]')).to_contain_text('"approved_by": "ada"')
    shot(page, "workflow-done")
    page.goto(f"{server.url}/ui/promise?id=order-7")
    expect(page.locator("#promise-state")).to_have_text("resolved")
    expect(page.locator("#content")).to_contain_text('"shipped": "o-7 shipped')
    shot(page, "dashboard")


def test_search_promises_by_state_and_id(page: Page, server: ServerProcess) -> None:
    for i in range(3):
        server.post("promise.create", {"id": f"pay-{i}", "timeoutAt": now_ms() + 3_600_000})
    server.post("promise.settle", {"id": "pay-1", "state": "resolved", "value": {}})
    server.post("promise.create", {"id": "other", "timeoutAt": now_ms() + 3_600_000})
    page.goto(f"{server.url}/ui/promises")
    expect(page.locator("#promises tbody tr")).to_have_count(4)
    page.locator("#state").select_option("resolved")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#promises tbody tr")).to_have_count(1)
    expect(page.locator("#promises")).to_contain_text("pay-1")
    page.locator("#state").select_option("pending")
    page.locator("#q").fill("pay-")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#promises tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#promises")).not_to_contain_text("other")
    shot(page, "promises")


def test_cancel_a_pending_promise(page: Page, server: ServerProcess) -> None:
    server.post("promise.create", {"id": "job-1", "timeoutAt": now_ms() + 3_600_000})
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{server.url}/ui/promise?id=job-1")
    page.locator("#cancel").click()
    expect(page.locator("#actions")).to_contain_text("job-1 is now rejected_canceled")
    _, body = server.post("promise.get", {"id": "job-1"})
    assert body["data"]["promise"]["state"] == "rejected_canceled"


def test_delete_a_schedule(page: Page, server: ServerProcess) -> None:
    for name in ("nightly", "hourly"):
        status, body = server.post(
            "schedule.create",
            {
                "id": name,
                "cron": "0 * * * *",
                "promiseId": f"{name}-{{{{.timestamp}}}}",
                "promiseTimeout": 60000,
                "promiseTags": {"resonate:target": "poll://any@dash"},
            },
        )
        assert status == 200, body
    page.goto(f"{server.url}/ui/schedules")
    table = page.locator("#schedules")
    expect(table.locator("tbody tr")).to_have_count(2)
    shot(page, "schedules")
    answers = ["dismiss", "accept"]
    page.on("dialog", lambda d: d.dismiss() if answers.pop(0) == "dismiss" else d.accept())
    page.get_by_role("button", name="Delete schedule nightly").click()
    expect(table.locator("tbody tr")).to_have_count(2)  # dismissed: nothing happened
    assert answers == ["accept"]
    page.get_by_role("button", name="Delete schedule nightly").click()
    expect(page.locator("#content")).to_contain_text("Schedule nightly deleted")
    expect(page.locator("#schedules tbody tr")).to_have_count(1)
    status, body = server.post("schedule.get", {"id": "nightly"})
    assert status == 404


def test_the_tasks_page_shows_each_lease_holder_and_when_its_lease_expires(
    page: Page, server: ServerProcess
) -> None:
    target = {"resonate:target": "poll://any@nobody"}
    for id in ("lease-1", "lease-2"):
        status, body = server.post(
            "promise.create", {"id": id, "timeoutAt": now_ms() + 3_600_000, "tags": target}
        )
        assert status == 200, body
    # lease-1 held by hand for an hour (no heartbeat moves it); lease-2 stays pending
    status, body = server.post(
        "task.acquire", {"id": "lease-1", "version": 0, "pid": "hand-7", "ttl": 3_600_000}
    )
    assert status == 200, body
    expires = body["data"]["task"]["expiresAt"]
    status, body = server.post("task.get", {"id": "lease-1"})
    assert body["data"]["task"]["expiresAt"] == expires  # the store's lease expiry, on the wire
    page.goto(f"{server.url}/ui/tasks?q=lease-")
    held = page.locator("#tasks tbody tr").filter(has_text="lease-1")
    expect(held).to_contain_text("hand-7")
    expect(held.locator("time.expires")).to_have_text(values.when(expires))
    waiting = page.locator("#tasks tbody tr").filter(has_text="lease-2")
    expect(waiting).to_contain_text("pending")
    expect(waiting.locator("time.expires")).to_have_count(0)
    shot(page, "tasks")


def test_cancel_a_workflow_tree(page: Page, server: ServerProcess, worker: Worker) -> None:
    start_review(server, "order-5", "o-5")
    page.goto(f"{server.url}/ui/promise?id=order-5")
    tree = page.locator("#tree")
    expect(tree.locator('tr[data-id="order-5:2"]')).to_have_attribute("data-state", "pending")
    expect(page.get_by_label("also its detached children")).not_to_be_checked()
    answers = ["dismiss", "accept"]
    dialogs: list[str] = []

    def answer(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        if answers.pop(0) == "dismiss":
            dialog.dismiss()  # type: ignore[attr-defined]
        else:
            dialog.accept()  # type: ignore[attr-defined]

    page.on("dialog", answer)
    page.get_by_role("button", name="Cancel tree").click()
    expect(page.get_by_role("button", name="Cancel tree")).to_be_visible()
    assert answers == ["accept"]
    _, body = server.post("promise.get", {"id": "order-5"})
    assert body["data"]["promise"]["state"] == "pending"  # dismissed: nothing happened
    page.get_by_role("button", name="Cancel tree").click()
    expect(page.locator("#actions")).to_contain_text(
        "Canceled the tree of order-5: 2 pending promise(s) canceled."
    )
    assert len(dialogs) == 2 and "every pending step below it" in dialogs[0]
    for id in ("order-5", "order-5:2"):
        _, body = server.post("promise.get", {"id": id})
        assert body["data"]["promise"]["state"] == "rejected_canceled", id
    # the tree on the page follows: both canceled, the finished step left as it was
    expect(tree.locator('tr[data-id="order-5"]')).to_have_attribute("data-state", "rejected_canceled")
    expect(tree.locator('tr[data-id="order-5:2"]')).to_have_attribute("data-state", "rejected_canceled")
    expect(tree.locator('tr[data-id="order-5:1"]')).to_have_attribute("data-state", "resolved")
    expect(page.get_by_role("button", name="Cancel tree")).to_have_count(0)
    shot(page, "tree-canceled")


def test_queues_show_the_limits_and_running_queued_retrying_live(page: Page, server: ServerProcess) -> None:
    status, body = server.post("limit.set", {"group": "busy", "concurrency": 1})
    assert status == 200, body
    status, body = server.post("limit.set", {"name": "charge", "concurrency": 2, "rate": "30/m"})
    assert status == 200, body
    for n in range(3):  # tasks nobody declared a limit for, sent to the limited group
        data = {
            "id": f"busy-{n}",
            "timeoutAt": now_ms() + 3_600_000,
            "tags": {"resonate:target": "poll://any@busy"},
        }
        assert server.post("promise.create", data)[0] == 200
    page.goto(f"{server.url}/ui/queues")
    limits = page.locator("#limits")
    expect(limits.locator('tr[data-name="@busy"]')).to_contain_text("group busy")
    expect(limits.locator('tr[data-name="charge"]')).to_contain_text("30/m")
    row = page.locator('#queues tr[data-key="@busy"]')
    expect(row.locator(".n-running")).to_have_text("1")
    expect(row.locator(".n-queued")).to_have_text("2")
    expect(row.locator(".n-retrying")).to_have_text("0")
    expect(page.locator("#content")).to_have_attribute("data-feed-state", "open")
    # live: one more waits; the running one is given back by its worker and counts as retrying
    data = {"id": "busy-3", "timeoutAt": now_ms() + 3_600_000, "tags": {"resonate:target": "poll://any@busy"}}
    assert server.post("promise.create", data)[0] == 200
    expect(row.locator(".n-queued")).to_have_text("3")
    acquired = server.post("task.acquire", {"id": "busy-0", "version": 0, "pid": "w1", "ttl": 60_000})
    assert acquired[0] == 200, acquired
    released = server.post("task.release", {"id": "busy-0", "version": 1})
    assert released[0] == 200, released
    expect(row.locator(".n-retrying")).to_have_text("1")
    expect(row.locator(".n-running")).to_have_text("1")
    shot(page, "queues")
