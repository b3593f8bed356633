"""Findings 11 and 12 of issue 8 against a real server: hostile input is a clear 400 (never a 500, never a
traceback in the log), and nothing a schedule or an address could later trip over is accepted."""

from __future__ import annotations

from typing import Any

import pytest
from tests.security.conftest import snap

from helpers import ServerProcess, now_ms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TARGET = "poll://any@g"


def _create(tags: dict[str, str], id: str = "p") -> tuple[str, dict[str, Any]]:
    return "promise.create", {"id": id, "timeoutAt": now_ms() + 3_600_000, "tags": tags}


def _schedule(**over: Any) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {
        "id": "s",
        "cron": "* * * * *",
        "promiseId": "{{.id}}-{{.timestamp}}",
        "promiseTimeout": 60_000,
        "promiseTags": {"resonate:target": TARGET},
    }
    data.update(over)
    return "schedule.create", data


HOSTILE = {
    # finding 11
    "999 tag filters": ("promise.search", {"tags": {f"k{i}": "v" for i in range(999)}}),
    "a 4,301-digit resonate:delay": _create({"resonate:target": TARGET, "resonate:delay": "9" * 4301}),
    "a 4,301-digit cron value": _schedule(cron="9" * 4301 + " * * * *"),
    "65 tags": _create({f"k{i}": "v" for i in range(65)}),
    # finding 12
    "a template expanding past the id limit": _schedule(id="s" * 100, promiseId="{{.id}}" * 100),
    "a NUL in a poll address": _create({"resonate:target": "poll://any@g\x00"}),
    "port 99999999": _create({"resonate:target": "http://example.com:99999999/x"}),
    "a huge cron step": _schedule(cron="*/99999999999999999999 * * * *"),
    "a newline inside a cron": _schedule(cron="* * *\n* *"),
    "a tag key with a double quote": _create({'team"': "a"}),
    "a search on a key with a double quote": ("promise.search", {"tags": {'team"': "a"}}),
    "a listener address with a line break": (
        "promise.register_listener",
        {"awaited": "p", "address": "poll://uni@g/a\nb"},
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_is_a_clear_400_and_changes_nothing(debug_server: ServerProcess, name: str) -> None:
    debug_server.create("p")  # something for the listener case to point at
    before = snap(debug_server)
    kind, data = HOSTILE[name]
    status, body = debug_server.post(kind, data)
    assert status == 400, body
    assert body["head"]["status"] == 400
    assert isinstance(body["data"], str) and "\n" not in body["data"] and "Internal" not in body["data"]
    assert snap(debug_server) == before
    assert "Traceback" not in debug_server.stderr


def test_a_quoted_key_can_no_longer_be_stored_where_search_cannot_find_it(server: ServerProcess) -> None:
    status, _ = server.post(*_create({'team"x': "a"}))
    assert status == 400
    server.create("q", tags={"team": "a"})
    status, body = server.post("promise.search", {"tags": {"team": "a"}})
    assert status == 200 and [p["id"] for p in body["data"]["promises"]] == ["q"]


def test_a_template_at_the_id_limit_is_accepted(server: ServerProcess) -> None:
    template = "{{.id}}-{{.timestamp}}-" + "x" * (1024 - 23)
    status, body = server.post(*_schedule(id="ab", promiseId=template))
    assert status == 200, body
