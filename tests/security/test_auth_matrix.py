"""Finding 2 (no authentication): the auth matrix against a real ``troth serve --auth-public-key``.

For every request kind: no token, a token signed by another key, an expired token, a token for another
audience, a token without ``aud`` → ``401``; a valid token whose prefix does not cover the request's ids →
``403``; an admin token → allowed. After every refusal ``debug.snap`` (read as admin) is unchanged, so a
refused request changed nothing. Searches are filtered by the prefix instead of refused (docs/security.md):
a tenant's search returns its own ids only. ``GET /poll`` has the same matrix.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from authkit import Keys
from helpers import ServerProcess, now_ms, wait_until

from .conftest import AUDIENCE, call, poll_status, snap

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TENANT = "t-"
OTHER = "x-"


def far() -> int:
    return now_ms() + 3_600_000


def requests(p: str) -> dict[str, dict[str, Any]]:
    """One well-formed request of every kind, every id (and pid, group) under ``p``."""
    task = p + "task"
    target = {"resonate:target": f"poll://any@{p}g"}
    return {
        "promise.get": {"id": p + "p"},
        "promise.create": {"id": p + "new", "timeoutAt": far(), "tags": {}},
        "promise.settle": {"id": p + "p", "state": "resolved"},
        "promise.register_callback": {"awaited": p + "p", "awaiter": task},
        "promise.register_listener": {"awaited": p + "p", "address": f"poll://any@{p}g"},
        "task.get": {"id": task},
        "task.create": {
            "pid": p + "w",
            "ttl": 60_000,
            "action": {
                "kind": "promise.create",
                "head": {},
                "data": {"id": p + "tc", "timeoutAt": far(), "tags": target},
            },
        },
        "task.acquire": {"id": task, "version": 0, "pid": p + "w", "ttl": 60_000},
        "task.release": {"id": task, "version": 1},
        "task.fulfill": {
            "id": task,
            "version": 1,
            "action": {"kind": "promise.settle", "head": {}, "data": {"id": task, "state": "resolved"}},
        },
        "task.suspend": {
            "id": task,
            "version": 1,
            "actions": [
                {
                    "kind": "promise.register_callback",
                    "head": {},
                    "data": {"awaited": p + "p", "awaiter": task},
                }
            ],
        },
        "task.fence": {
            "id": task,
            "version": 1,
            "action": {"kind": "promise.create", "head": {}, "data": {"id": p + "f", "timeoutAt": far()}},
        },
        "task.fence_batch": {
            "id": task,
            "version": 1,
            "actions": [
                {"kind": "promise.create", "head": {}, "data": {"id": p + "fb", "timeoutAt": far()}},
                {"kind": "promise.settle", "head": {}, "data": {"id": p + "p", "state": "resolved"}},
            ],
        },
        "task.heartbeat": {"pid": p + "w", "tasks": [{"id": task, "version": 1}]},
        "task.halt": {"id": task},
        "task.continue": {"id": task},
        "schedule.get": {"id": p + "s"},
        "schedule.create": {
            "id": p + "s2",
            "cron": "0 0 1 1 *",
            "promiseId": p + "s2-{{.timestamp}}",
            "promiseTimeout": 60_000,
            "promiseTags": target,
        },
        "schedule.delete": {"id": p + "s"},
        "tree.cancel": {"id": p + "p"},
        "tree.fork": {"id": task, "to": p + "forked"},
        "limit.set": {"name": p + "fn", "concurrency": 2},
        "limit.get": {"name": p + "fn"},
        "limit.search": {},
        "queue.search": {},
        "promise.search": {},
        "task.search": {},
        "schedule.search": {},
        "debug.snap": {},
        "debug.tick": {"time": now_ms() - 1},
        "debug.start": {},
        "debug.stop": {},
        "debug.reset": {},
    }


KINDS = list(requests(TENANT))
SEARCHES = {"promise.search", "task.search", "schedule.search"}
SERVER_WIDE = {"limit.set", "limit.get", "limit.search", "queue.search"}


def seed(server: ServerProcess, admin: str, p: str) -> None:
    """State under ``p`` that every request kind would touch: a promise, a task, a schedule."""
    target = {"resonate:target": f"poll://any@{p}g"}
    for kind, data in [
        ("promise.create", {"id": p + "p", "timeoutAt": far()}),
        ("promise.create", {"id": p + "task", "timeoutAt": far(), "tags": target}),
        (
            "schedule.create",
            {
                "id": p + "s",
                "cron": "0 0 1 1 *",
                "promiseId": p + "s-{{.timestamp}}",
                "promiseTimeout": 60_000,
                "promiseTags": target,
            },
        ),
    ]:
        status, body = call(server, kind, data, admin)
        assert status == 200, body


@pytest.fixture(scope="module")
def seeded(auth_server: ServerProcess, admin: str) -> ServerProcess:
    seed(auth_server, admin, TENANT)
    seed(auth_server, admin, OTHER)
    return auth_server


def bad_tokens(keys: Keys, tmp: Any) -> dict[str, str | None]:
    other = Keys.generate(tmp, "ed25519", name="intruder")
    return {
        "no token": None,
        "bad signature": other.token(admin=True, aud=AUDIENCE),
        "expired": keys.token(admin=True, aud=AUDIENCE, ttl=-3600),
        "wrong aud": keys.token(admin=True, aud="someone-else"),
        "no aud": keys.token(admin=True),
        "not a jwt": "not-a-token-at-all",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_refuses_bad_tokens_and_foreign_ids_and_changes_nothing(
    seeded: ServerProcess, keys: Keys, admin: str, kind: str, tmp_path: Any
) -> None:
    server = seeded
    before = snap(server, admin)
    for label, token in bad_tokens(keys, tmp_path).items():
        status, body = call(server, kind, requests(TENANT)[kind], token)
        assert (status, body["data"]) == (401, "Unauthorized"), (label, body)
        assert body["kind"] == kind
        assert snap(server, admin) == before, f"{kind} with {label} changed the state"

    tenant = keys.token(TENANT, aud=AUDIENCE)
    if kind in SEARCHES:
        status, body = call(server, kind, {}, tenant)
        assert status == 200, body
        ids = [item["id"] for item in next(iter(body["data"].values()))]
        assert ids and all(i.startswith(TENANT) for i in ids), ids
    else:
        status, body = call(server, kind, requests(OTHER)[kind], tenant)
        assert (status, body["data"]) == (403, "Forbidden"), body
        assert snap(server, admin) == before, f"{kind} outside the prefix changed the state"

    no_prefix = keys.token(aud=AUDIENCE)
    status, body = call(server, kind, requests(TENANT)[kind], no_prefix)
    assert status == 403, body
    assert snap(server, admin) == before

    if kind == "debug.reset":
        return  # allowed for admins, but it would wipe the seeded state of the other parameters
    status, body = call(server, kind, requests(OTHER)[kind], admin)
    assert status not in (401, 403), body


def test_the_tenant_may_do_everything_under_its_prefix(auth_server: ServerProcess, keys: Keys) -> None:
    """The same requests with a tenant token on its own ids are never refused (the ops' own answers)."""
    tenant = keys.token("own-", aud=AUDIENCE)
    own = requests("own-")
    for kind, data in [
        ("promise.create", {"id": "own-p", "timeoutAt": far()}),
        (
            "promise.create",
            {"id": "own-task", "timeoutAt": far(), "tags": {"resonate:target": "poll://any@own-g"}},
        ),
    ]:
        assert call(auth_server, kind, data, tenant)[0] == 200
    for kind in KINDS:
        if kind.startswith("debug.") or kind in SERVER_WIDE:
            continue  # server-wide: admin tokens or prefix "" only
        status, body = call(auth_server, kind, own[kind], tenant)
        assert status not in (401, 403), (kind, body)


def test_a_fence_batch_with_one_action_outside_the_prefix_is_403(
    seeded: ServerProcess, keys: Keys, admin: str
) -> None:
    """Every action of a ``task.fence_batch`` is checked, not only the task's id or the first action."""
    before = snap(seeded, admin)
    data = requests(TENANT)["task.fence_batch"]
    outside = {"kind": "promise.settle", "head": {}, "data": {"id": OTHER + "p", "state": "resolved"}}
    data = {**data, "actions": [*data["actions"], outside]}
    status, body = call(seeded, "task.fence_batch", data, keys.token(TENANT, aud=AUDIENCE))
    assert (status, body["data"]) == (403, "Forbidden"), body
    assert snap(seeded, admin) == before


@pytest.mark.parametrize(
    ("group", "pid"), [("x-g", "t-w"), ("t-g", "x-w"), ("x-g", "x-w"), ("default", "t-w")]
)
def test_poll_outside_the_prefix_is_403(auth_server: ServerProcess, keys: Keys, group: str, pid: str) -> None:
    assert poll_status(auth_server, group, pid, keys.token(TENANT, aud=AUDIENCE)) == 403


def test_poll_refuses_bad_tokens_and_admits_tenant_and_admin(
    auth_server: ServerProcess, keys: Keys, admin: str, tmp_path: Any
) -> None:
    for label, token in bad_tokens(keys, tmp_path).items():
        assert poll_status(auth_server, "t-g", "t-w", token) == 401, label
    assert poll_status(auth_server, "t-g", "t-w", keys.token(aud=AUDIENCE)) == 403  # no prefix claim
    assert poll_status(auth_server, "t-g", "t-w", keys.token(TENANT, aud=AUDIENCE)) == 200
    assert poll_status(auth_server, "anything", "anyone", admin) == 200


def test_a_token_in_the_header_alone_or_head_alone_works_and_two_different_ones_do_not(
    auth_server: ServerProcess, keys: Keys
) -> None:
    tenant = keys.token(TENANT, aud=AUDIENCE)
    data = {"id": "t-header-only", "timeoutAt": far()}
    assert call(auth_server, "promise.create", data, tenant, in_head=False)[0] == 200
    data = {"id": "t-head-only", "timeoutAt": far()}
    assert call(auth_server, "promise.create", data, tenant, in_header=False)[0] == 200
    other = keys.token(TENANT, aud=AUDIENCE, sub="someone")
    status, body = call(
        auth_server,
        "promise.create",
        {"id": "t-two-tokens", "timeoutAt": far()},
        tenant,
        in_header=False,
        headers={"authorization": f"Bearer {other}"},
    )
    assert status == 401, body


def test_an_expired_token_is_refused_even_after_it_was_cached(auth_server: ServerProcess, keys: Keys) -> None:
    """A token accepted once (and cached) is refused once its exp (plus the 60 s leeway) has passed."""
    short = keys.token(TENANT, aud=AUDIENCE, ttl=-58)  # expired 58 s ago: inside the leeway for 2 s
    assert call(auth_server, "promise.get", {"id": "t-p"}, short)[0] in (200, 404)
    wait_until(
        lambda: call(auth_server, "promise.get", {"id": "t-p"}, short)[0] == 401,
        15,
        "the cached token to be refused after its expiry",
    )


def test_groups_endpoint_needs_a_token_covering_the_group(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    """``GET /groups/{group}`` (who is connected, which functions they announced) follows the stream rules."""
    tenant = keys.token(TENANT, aud=AUDIENCE)

    def status(group: str, token: str | None) -> int:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return auth_server.get(f"/groups/{group}", headers=headers).status_code

    assert status("t-g", None) == 401
    assert status("t-g", "not-a-token") == 401
    assert status("x-g", tenant) == 403
    assert status("t-g", keys.token(aud=AUDIENCE)) == 403  # no prefix claim
    assert status("t-g", tenant) == 200
    assert status("anything", admin) == 200
    assert auth_server.get("/groups/t-g", headers={"authorization": f"Bearer {tenant}"}).json() == {
        "group": "t-g",
        "workers": {},
    }


def test_announcing_functions_follows_the_stream_rules(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    """``PUT /groups/{group}/{pid}`` (a worker's names after a late registration): a token that may open the
    stream; ``404`` when no replica holds it."""
    tenant = keys.token(TENANT, aud=AUDIENCE)

    def put(group: str, pid: str, token: str | None, body: Any = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return auth_server.client.put(
            f"/groups/{group}/{pid}", json={"functions": ["a"]} if body is None else body, headers=headers
        )

    assert put("t-g", "t-w", None).status_code == 401
    assert put("t-g", "t-w", "not-a-token").status_code == 401
    assert put("x-g", "t-w", tenant).status_code == 403
    assert put("t-g", "x-w", tenant).status_code == 403
    assert put("t-g", "t-w", tenant).status_code == 404  # no stream
    with auth_server.sse("t-g", "t-w", headers={"authorization": f"Bearer {tenant}"}):
        answer = put("t-g", "t-w", tenant, {"functions": ["b", "a"]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"group": "t-g", "pid": "t-w", "functions": ["a", "b"]}
        shown = auth_server.get("/groups/t-g", headers={"authorization": f"Bearer {tenant}"}).json()
        assert shown == {"group": "t-g", "workers": {"t-w": ["a", "b"]}}
        assert put("t-g", "t-w", admin).status_code == 200
        assert put("t-g", "t-w", tenant, {"functions": "a"}).status_code == 400
        assert put("t-g", "t-w", tenant, {"functions": ["x" * 70_000]}).status_code == 413
