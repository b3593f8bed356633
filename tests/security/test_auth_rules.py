"""The prefix rules beyond the matrix, key types and token forms, against real ``troth serve`` processes.

Searches page within the prefix; a schedule's template must keep its promises under the prefix (and the
promises it fires are the tenant's); ``poll://`` addresses (targets, listeners) must name the tenant's
groups and pids; a task answer's ``preload`` never shows a promise outside the prefix; each principal
holds a bounded number of streams; a stream opened under another token cannot end a pid's leases
(finding 5); ``/metrics`` on the API port needs an admin token. Key types: RSA, EC and Ed25519 verify
their own algorithms and nothing else (an HS256 token "signed" with the public key, ``alg: none``); two
keys may be configured at once (rotation); ``iss`` is checked when configured. Static tokens: plain and
hashed lines, prefixes and the admin role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from authkit import Keys
from helpers import SSE, ServerProcess, free_port, now_ms, sample, wait_until

from .conftest import AUDIENCE, call, poll_status, snap, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def far() -> int:
    return now_ms() + 3_600_000


def target(group: str) -> dict[str, str]:
    return {"resonate:target": f"poll://any@{group}"}


def metric(server: ServerProcess, name: str, labels: dict[str, str] | None = None) -> float | None:
    """A sample from the metrics listener (the API port's ``/metrics`` needs an admin token)."""
    return sample(server.metrics(server.metrics_port), name, labels)


def create(server: ServerProcess, token: str, id: str, tags: dict[str, str] | None = None) -> tuple[int, Any]:
    status, body = call(server, "promise.create", {"id": id, "timeoutAt": far(), "tags": tags or {}}, token)
    return status, body["data"]


# ─── prefix rules ───────────────────────────────────────────────────────────────────────────────────────


def test_a_tenants_tree_cancel_leaves_other_tenants_promises_alone(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    """Another tenant cannot tag its promise into this tenant's lineage (an id must continue its origin
    tag), and canceling a tree settles only the ids under the canceling token's prefix (docs/security.md)."""
    lineage = {"resonate:origin": "tc-r", "resonate:parent": "tc-r"}
    assert create(auth_server, admin, "tc-r", lineage)[0] == 200
    assert create(auth_server, admin, "tc-r:1", lineage)[0] == 200
    intruder = keys.token("tx-", aud=AUDIENCE)
    assert create(auth_server, intruder, "tx-planted", lineage)[0] == 400
    assert create(auth_server, intruder, "tx-planted")[0] == 200
    tenant = keys.token("tc-", aud=AUDIENCE)
    status, body = call(auth_server, "tree.cancel", {"id": "tc-r"}, tenant)
    assert status == 200, body
    assert body["data"]["canceled"] == ["tc-r", "tc-r:1"]
    status, body = call(auth_server, "promise.get", {"id": "tx-planted"}, admin)
    assert body["data"]["promise"]["state"] == "pending"
    # and neither tenant may cancel or fork across the prefix
    assert call(auth_server, "tree.cancel", {"id": "tc-r"}, intruder)[0] == 403
    assert call(auth_server, "tree.fork", {"id": "tc-r", "to": "tx-copy"}, tenant)[0] == 403


def test_search_pages_stay_inside_the_prefix(auth_server: ServerProcess, keys: Keys, admin: str) -> None:
    for id in ["pa-1", "pa-2", "pa-3", "pb-1", "pa", "p"]:
        assert create(auth_server, admin, id)[0] == 200
    tenant = keys.token("pa-", aud=AUDIENCE)
    seen: list[str] = []
    cursor = None
    while True:
        data: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            data["cursor"] = cursor
        status, body = call(auth_server, "promise.search", data, tenant)
        assert status == 200, body
        seen += [p["id"] for p in body["data"]["promises"]]
        cursor = body["data"].get("cursor")
        if cursor is None:
            break
    assert seen == ["pa-1", "pa-2", "pa-3"]
    # a cursor from outside the prefix does not widen it
    status, body = call(auth_server, "promise.search", {"cursor": "a"}, tenant)
    assert [p["id"] for p in body["data"]["promises"]] == ["pa-1", "pa-2", "pa-3"]


def test_a_schedule_must_keep_its_promises_under_the_prefix(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    tenant = keys.token("sc-", aud=AUDIENCE)
    base = {"cron": "* * * * * *", "promiseTimeout": 60_000, "promiseTags": target("sc-g")}
    before = snap(auth_server, admin)
    for template in ["{{.timestamp}}", "x-{{.id}}", "{{.timestamp}}-sc-"]:
        status, body = call(
            auth_server, "schedule.create", {"id": "sc-a", "promiseId": template, **base}, tenant
        )
        assert status == 403, (template, body)
    foreign_target = {**base, "promiseTags": target("other")}
    status, _ = call(
        auth_server,
        "schedule.create",
        {"id": "sc-a", "promiseId": "sc-{{.timestamp}}", **foreign_target},
        tenant,
    )
    assert status == 403
    assert snap(auth_server, admin) == before

    status, body = call(
        auth_server, "schedule.create", {"id": "sc-a", "promiseId": "{{.id}}-{{.timestamp}}", **base}, tenant
    )
    assert status == 200, body

    def fired() -> list[str] | None:
        status, body = call(auth_server, "promise.search", {"tags": {"resonate:schedule": "sc-a"}}, tenant)
        ids = [p["id"] for p in body["data"]["promises"]] if status == 200 else []
        return ids or None

    ids = wait_until(fired, 10, "the schedule to fire")
    assert all(i.startswith("sc-a-") for i in ids), ids
    status, body = call(auth_server, "promise.get", {"id": ids[0]}, tenant)
    assert status == 200, body
    assert call(auth_server, "schedule.delete", {"id": "sc-a"}, tenant)[0] == 200


def test_poll_addresses_must_name_the_tenants_groups_and_pids(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    tenant = keys.token("ad-", aud=AUDIENCE)
    before = snap(auth_server, admin)
    assert create(auth_server, tenant, "ad-1", target("victims"))[0] == 403
    assert create(auth_server, tenant, "ad-1", {"resonate:target": "poll://uni@ad-g/victim"})[0] == 403
    assert create(auth_server, tenant, "ad-1", target("ad-g"))[0] == 200
    middle = snap(auth_server, admin)
    status, _ = call(
        auth_server,
        "promise.register_listener",
        {"awaited": "ad-1", "address": "poll://uni@victims/w"},
        tenant,
    )
    assert status == 403
    assert snap(auth_server, admin) == middle
    status, _ = call(
        auth_server,
        "promise.register_listener",
        {"awaited": "ad-1", "address": "poll://uni@ad-g/ad-w"},
        tenant,
    )
    assert status == 200
    assert before != middle


def test_preload_never_shows_promises_outside_the_prefix(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    branch = {"resonate:branch": "pl", "resonate:origin": "pl"}
    assert create(auth_server, admin, "pl", branch)[0] == 200
    assert create(auth_server, admin, "pl:1", {**branch, **target("pl:1g")})[0] == 200
    assert create(auth_server, admin, "pl:2", branch)[0] == 200
    assert create(auth_server, admin, "pl:1.5", branch)[0] == 200
    narrow = keys.token("pl:1", aud=AUDIENCE)
    status, body = call(
        auth_server, "task.acquire", {"id": "pl:1", "version": 0, "pid": "pl:1w", "ttl": 60_000}, narrow
    )
    assert status == 200, body
    assert [p["id"] for p in body["data"]["preload"]] == ["pl:1.5"]


def test_each_principal_holds_a_bounded_number_of_streams(keys: Keys, admin: str) -> None:
    args = [
        "--auth-public-key",
        str(keys.public_path),
        "--auth-audience",
        AUDIENCE,
        "--max-connections-per-token",
    ]
    with ServerProcess(":memory:", args=[*args, "3"], metrics_port=free_port()) as server:
        greedy = keys.token("gr-", aud=AUDIENCE, sub="greedy")
        streams = [
            server.sse("gr-g", f"gr-{i}", headers={"authorization": f"Bearer {greedy}"}) for i in range(3)
        ]
        assert poll_status(server, "gr-g", "gr-4", greedy) == 503
        polite = keys.token("po-", aud=AUDIENCE, sub="polite")
        assert poll_status(server, "po-g", "po-1", polite) == 200
        assert metric(server, "troth_refused_total", {"reason": "sse_per_principal"}) == 1
        streams[0].close()
        wait_until(lambda: poll_status(server, "gr-g", "gr-4", greedy) == 200, 10, "a freed slot")


def test_a_stream_of_another_principal_cannot_end_a_pids_leases(keys: Keys) -> None:
    """Finding 5 with auth: pid ``a-sub-w`` holds a lease on ``a-task`` (taken with the ``a-`` token); a
    token for ``a-sub-`` may open that pid's stream, but closing it leaves the lease alone. The owner's
    own stream closing ends it at once (docs/design/decisions.md#dropped-workers still holds)."""
    args = ["--auth-public-key", str(keys.public_path), "--auth-audience", AUDIENCE]
    with ServerProcess(":memory:", args=args, metrics_port=free_port()) as server:
        owner = keys.token("a-", aud=AUDIENCE, sub="owner")
        other = keys.token("a-sub-", aud=AUDIENCE, sub="other")
        data = {
            "pid": "a-sub-w",
            "ttl": 600_000,
            "action": {
                "kind": "promise.create",
                "head": {},
                "data": {"id": "a-task", "timeoutAt": far(), "tags": target("a-sub-g")},
            },
        }
        status, body = call(server, "task.create", data, owner)
        assert status == 200, body

        def task_state() -> str:
            return str(call(server, "task.get", {"id": "a-task"}, owner)[1]["data"]["task"]["state"])

        stream = server.sse("a-sub-g", "a-sub-w", headers={"authorization": f"Bearer {other}"})
        stream.close()
        wait_until(lambda: metric(server, "troth_sse_connections") == 0, 10, "the stream to be gone")
        assert task_state() == "acquired"

        stream = server.sse("a-sub-g", "a-sub-w", headers={"authorization": f"Bearer {owner}"})
        stream.close()
        wait_until(lambda: task_state() == "pending", 10, "the owner's close to end the lease")


def test_metrics_on_the_api_port_need_an_admin_token(keys: Keys, admin: str) -> None:
    args = ["--auth-public-key", str(keys.public_path), "--auth-audience", AUDIENCE]
    with ServerProcess(":memory:", args=args, metrics_port=free_port()) as server:
        assert server.get("/metrics").status_code == 401
        tenant = keys.token("m-", aud=AUDIENCE)
        assert server.get("/metrics", headers={"authorization": f"Bearer {tenant}"}).status_code == 403
        assert server.get("/metrics", headers={"authorization": f"Bearer {admin}"}).status_code == 200
        assert server.get("/health").status_code == 200
        assert server.get("/ready").status_code == 200
        assert server.metrics(server.metrics_port).startswith("#")  # the loopback listener needs none


# ─── keys and token forms ───────────────────────────────────────────────────────────────────────────────


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_each_key_type_verifies_its_tokens_and_refuses_algorithm_tricks(kind: str, tmp_path: Path) -> None:
    keys = Keys.generate(tmp_path, kind)
    with ServerProcess(":memory:", args=["--auth-public-key", str(keys.public_path)]) as server:
        good = keys.token("k-")
        assert create(server, good, "k-1")[0] == 200
        claims = {"prefix": "", "role": "admin", "exp": now_ms() // 1000 + 3600}
        hs256 = forged({"alg": "HS256", "typ": "JWT"}, claims, keys.public_path.read_bytes())
        none = forged({"alg": "none", "typ": "JWT"}, claims, None)
        for token in [hs256, none]:
            assert create(server, token, "k-2")[0] == 401
        no_exp = keys.token("k-", ttl=3600, exp=None)
        assert create(server, no_exp, "k-3")[0] == 401


def test_two_keys_verify_at_once_and_the_issuer_is_checked(tmp_path: Path) -> None:
    old, new = Keys.generate(tmp_path, "rsa", name="old"), Keys.generate(tmp_path, "ed25519", name="new")
    args = ["--auth-public-key", str(old.public_path), "--auth-public-key", str(new.public_path)]
    with ServerProcess(":memory:", args=[*args, "--auth-issuer", "https://issuer.example"]) as server:
        assert create(server, old.token("r-", iss="https://issuer.example"), "r-1")[0] == 200
        assert create(server, new.token("r-", iss="https://issuer.example"), "r-2")[0] == 200
        assert create(server, new.token("r-", iss="https://evil.example"), "r-3")[0] == 401
        assert create(server, new.token("r-"), "r-4")[0] == 401


def test_static_tokens_plain_and_hashed(tmp_path: Path) -> None:
    plain = "plain-token-0123456789"
    hashed = "hashed-token-abcdefghij"
    admin = "admin-token-0123456789"
    digest = hashlib.sha256(hashed.encode()).hexdigest()
    tokens = write(
        tmp_path / "tokens",
        f"# team a\n{plain} prefix=ta- name=team-a\nsha256:{digest} prefix=tb-\n{admin} role=admin\n",
    )
    with ServerProcess(":memory:", args=["--auth-tokens", str(tokens)]) as server:
        assert create(server, plain, "ta-1")[0] == 200
        assert create(server, plain, "tb-1")[0] == 403
        assert create(server, hashed, "tb-1")[0] == 200
        assert create(server, admin, "anything")[0] == 200
        assert create(server, "plain-token-012345678", "ta-2")[0] == 401  # one character short
        assert create(server, digest, "tb-2")[0] == 401  # the digest is not the token
        assert create(server, f"sha256:{digest}", "tb-2")[0] == 401
        assert poll_status(server, "ta-g", "ta-w", plain) == 200
        assert poll_status(server, "tb-g", "tb-w", plain) == 403


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("short prefix=a-\n", "16 characters or more"),
        ("long-enough-token-0001\n", "needs prefix="),
        ("long-enough-token-0001 prefix=a- role=owner\n", "the only role is admin"),
        ("sha256:abcd prefix=a-\n", "64 hex digits"),
        ("# nothing\n", "holds no token"),
    ],
)
def test_a_bad_token_file_stops_the_server_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    tokens = write(tmp_path / "tokens", content)
    server = ServerProcess(":memory:", args=["--auth-tokens", str(tokens)])
    with pytest.raises(AssertionError, match="exited with 1"):
        server.start()
    lines = [line for line in server.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("troth: ") and message in lines[0], lines
    server.close()


def test_sse_and_requests_of_the_sdk_carry_the_token(auth_server: ServerProcess, keys: Keys) -> None:
    """A raw check of what an SSE client must send: the header alone opens the stream; the stream then
    receives the tenant's execute."""
    tenant = keys.token("sd-", aud=AUDIENCE)
    stream: SSE = auth_server.sse("sd-g", "sd-w", headers={"authorization": f"Bearer {tenant}"})
    assert create(auth_server, tenant, "sd-1", target("sd-g"))[0] == 200
    assert stream.get(10)["kind"] == "execute"
    with httpx.Client() as client:
        response = client.get(f"{auth_server.url}/poll/sd-g/sd-w2", headers={"authorization": "Basic abc"})
        assert response.status_code == 401


def test_only_the_streams_own_principal_or_an_admin_replaces_it(
    auth_server: ServerProcess, keys: Keys, admin: str
) -> None:
    """Finding 6 with auth: the newest stream of a (group, pid) replaces the older one only when the same
    principal opens it; another token of the same tenant gets 409 and the worker keeps its messages."""
    owner = keys.token("sh-", aud=AUDIENCE, sub="sh-owner")
    intruder = keys.token("sh-", aud=AUDIENCE, sub="sh-intruder")
    stream = auth_server.sse("sh-g", "sh-w", headers={"authorization": f"Bearer {owner}"})
    assert poll_status(auth_server, "sh-g", "sh-w", intruder) == 409
    assert create(auth_server, owner, "sh-1", {"resonate:target": "poll://uni@sh-g/sh-w"})[0] == 200
    assert stream.get()["data"]["task"]["id"] == "sh-1"
    again = auth_server.sse("sh-g", "sh-w", headers={"authorization": f"Bearer {owner}"})  # a reconnect
    assert create(auth_server, owner, "sh-2", {"resonate:target": "poll://uni@sh-g/sh-w"})[0] == 200
    assert again.get()["data"]["task"]["id"] == "sh-2"
    assert poll_status(auth_server, "sh-g", "sh-w", admin) == 200
