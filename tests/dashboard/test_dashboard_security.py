"""The dashboard under authentication and against hostile data, in a real browser (issue 11): with auth
on, no token → refused, a token → works, a prefix token sees only its prefix; ids, tags and values that
carry markup are shown as text, never run."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from helpers import ServerProcess, now_ms

from .conftest import Worker, shot, start_review

ADMIN = "dashboard-admin-token-0123456789"
TEAM = "dashboard-team-a-token-0123456789"


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[ServerProcess]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ADMIN} role=admin name=admin\n{TEAM} prefix=team-a name=team-a\n")
    with ServerProcess(":memory:", args=["--auth-tokens", str(tokens)]) as proc:
        yield proc


def use_token(page: Page, token: str) -> None:
    page.locator("#token").fill(token)
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#token-state")).to_have_text("token set for this tab")


def test_with_auth_on_no_token_is_refused_and_a_token_works(page: Page, auth_server: ServerProcess) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    worker = Worker(auth_server.url, token=ADMIN)
    try:
        start_review(auth_server, "order-9", "o-9", bearer)
        for path in (
            "/ui",
            "/ui/promises",
            "/ui/promise?id=order-9",
            "/ui/tasks",
            "/ui/schedules",
            "/ui/workers",
            "/ui/queues",
        ):
            page.goto(f"{auth_server.url}{path}")
            refused = page.locator("#content .refused")
            expect(refused).to_have_attribute("data-status", "401")
            expect(refused).to_contain_text("This server requires a token")
            expect(page.locator("#content")).not_to_contain_text("o-9")
        shot(page, "auth-refused")
        # the change feed and the actions refuse a request without a token too
        with httpx.Client(base_url=auth_server.url) as client:
            assert client.get("/ui/feed", headers={"HX-Request": "true"}).status_code == 401
            answer = client.post(
                "/ui/a/settle",
                data={"id": "order-9:2", "action": "resolve", "value": "true"},
                headers={"HX-Request": "true"},
            )
            assert answer.status_code == 401
            answer = client.post("/ui/a/cancel-tree", data={"id": "order-9"}, headers={"HX-Request": "true"})
            assert answer.status_code == 401
            assert (
                client.post(
                    "/ui/a/settle", data={"id": "order-9:2", "action": "resolve"}, headers=bearer
                ).status_code
                == 400
            )  # without HX-Request: not from the dashboard's page
        _, body = auth_server.post("promise.get", {"id": "order-9:2"}, {"auth": ADMIN})
        assert body["data"]["promise"]["state"] == "pending"

        page.goto(f"{auth_server.url}/ui/promise?id=order-9:2")
        use_token(page, ADMIN)
        expect(page.locator("#content")).to_have_attribute("data-feed-state", "open")
        page.on("dialog", lambda d: d.accept())
        page.locator("#resolve").click()
        expect(page.locator("#actions")).to_contain_text("order-9:2 is now resolved")
        expect(page.locator('#tree tr[data-id="order-9"]')).to_have_attribute("data-state", "resolved")
        shot(page, "auth-token")
    finally:
        worker.close()


def test_a_prefix_token_sees_only_its_prefix(page: Page, auth_server: ServerProcess) -> None:
    for id in ("team-a-1", "team-b-1"):
        status, body = auth_server.post(
            "promise.create", {"id": id, "timeoutAt": now_ms() + 60_000}, {"auth": ADMIN}
        )
        assert status == 200, body
    page.goto(f"{auth_server.url}/ui/promises")
    use_token(page, TEAM)
    expect(page.locator("#promises tbody tr")).to_have_count(1)
    expect(page.locator("#promises")).to_contain_text("team-a-1")
    page.goto(f"{auth_server.url}/ui/promises?q=team-")
    expect(page.locator("#promises tbody tr")).to_have_count(1)
    page.goto(f"{auth_server.url}/ui/promises?q=team-b")
    expect(page.locator("#content")).to_contain_text("No promise matches")
    page.goto(f"{auth_server.url}/ui/promise?id=team-b-1")
    expect(page.locator("#content .refused")).to_have_attribute("data-status", "403")
    with httpx.Client(base_url=auth_server.url) as client:  # nor cancel another's tree
        answer = client.post(
            "/ui/a/cancel-tree",
            data={"id": "team-b-1"},
            headers={"HX-Request": "true", "Authorization": f"Bearer {TEAM}"},
        )
        assert answer.status_code == 403
    _, body = auth_server.post("promise.get", {"id": "team-b-1"}, {"auth": ADMIN})
    assert body["data"]["promise"]["state"] == "pending"
    page.goto(f"{auth_server.url}/ui/queues")  # limits and queues are server-wide: admin only
    expect(page.locator("#content .refused")).to_have_attribute("data-status", "403")
    page.goto(f"{auth_server.url}/ui")  # the whole server's counts are for an admin token only
    expect(page.locator("#content")).to_contain_text("they need an admin token")
    expect(page.locator("#content")).not_to_contain_text("Settled per second")


def test_markup_in_ids_tags_and_values_is_shown_as_text(page: Page, server: ServerProcess) -> None:
    hostile = "x<img src=x onerror=alert(1)>"
    value = base64.b64encode(json.dumps("<script>alert(2)</script>").encode()).decode()
    status, body = server.post(
        "promise.create",
        {
            "id": hostile,
            "timeoutAt": now_ms() + 60_000,
            "tags": {"note": "<script>alert(3)</script>"},
            "param": {"data": value},
        },
    )
    assert status == 200, body
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/ui/promises")
    expect(page.locator("#promises")).to_contain_text(hostile)
    page.get_by_role("link", name=hostile).click()
    expect(page.locator("#content")).to_contain_text("<script>alert(2)</script>")
    page.locator("summary").click()
    expect(page.locator("#content")).to_contain_text("<script>alert(3)</script>")
    assert page.locator("#content img").count() == 0
    assert page.locator("#content script").count() == 0
    assert dialogs == []
