"""A crafted rejection must not run code in the worker that awaits it (issue 8, finding 1).

Against a real ``troth serve``, a real worker process (``tests/sdk/workers.py``) awaits a latent promise;
the promise is rejected with ``troth promises reject <id> --value '{"__type":"error",…,"__py_pickle":…}'``
whose pickle would create a file through ``os.system``. The file must never exist, the awaiting workflow
must see a clear ``ApplicationError`` with the message, and the worker must say in its log that it did not
unpickle it. With a ``pickle_key`` the same holds for an unsigned or wrongly signed pickle, while a pickle
signed with the shared key crosses processes intact (docs/sdk/errors-and-codec.md).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdk.conftest import Env
from sdk.support import until
from troth.protocol import messages as wire
from troth.sdk.trust import PickleSigner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

KEY = "a-shared-pickle-key-of-32-bytes!!"
ATTACKER_KEY = "the-attacker-guessed-another-key"


class Payload:
    """Pickles to ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def cli(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
    command = [sys.executable, "-m", "troth.cli", "-S", server, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


async def reject_with_crafted_pickle(env: Env, marker: Path, signature_key: str | None) -> dict[str, Any]:
    """Start ``verdict_wf`` on the worker, reject its latent promise with the crafted pickle through the
    CLI, and return what the workflow saw."""
    starter, rec = env.client(group=f"{env.group}-starter")
    async with starter:
        latent = env.id("approval")
        handle = starter.options(target=env.group).rpc(env.id("verdict"), "verdict_wf", latent)

        async def latent_exists() -> bool:
            status = (await rec.raw(wire.promise_get(latent))).status
            return status == 200

        await until(latent_exists, 20, "the workflow to create its latent promise")
        pickled = pickle.dumps(Payload(f"touch {marker}"))
        value: dict[str, Any] = {
            "__type": "error",
            "message": "approval refused",
            "type": "builtins.ValueError",
            "__py_pickle": base64.b64encode(pickled).decode(),
        }
        if signature_key is not None:
            value["__py_pickle_hmac"] = PickleSigner(signature_key).sign(pickled)
        done = cli(env.url, "promises", "reject", latent, "--value", json.dumps(value))
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = await handle
    return result


@pytest.mark.parametrize(
    ("worker_key", "signature_key", "logged"),
    [
        (None, None, "this process has no pickle_key"),
        (None, ATTACKER_KEY, "this process has no pickle_key"),
        (KEY, None, "its pickle is not signed"),
        (KEY, ATTACKER_KEY, "its signature is wrong"),
    ],
    ids=["no-key", "no-key-signed", "key-unsigned", "key-wrong-signature"],
)
async def test_a_crafted_pickle_in_a_rejection_never_runs(
    remote_env: Env, worker_key: str | None, signature_key: str | None, logged: str
) -> None:
    env = remote_env
    worker = await env.worker("proc-victim", pickle_key=worker_key).ready()
    marker = env.tmp / "pwned"
    seen = await reject_with_crafted_pickle(env, marker, signature_key)
    assert not marker.exists(), "the pickle in the rejection was executed"
    # The awaiting code sees a clear error: the type it claims (an allowed built-in), with its message.
    assert seen == {"type": "ValueError", "message": "approval refused", "type_name": None}
    await until(lambda: logged in worker.stderr(), 10, f"the worker to log {logged!r}")
    assert "posix.system" in worker.stderr() or "nt.system" in worker.stderr()


async def test_a_crafted_pickle_naming_no_allowed_type_is_an_application_error(remote_env: Env) -> None:
    env = remote_env
    await env.worker("proc-victim").ready()
    marker = env.tmp / "pwned"
    starter, rec = env.client(group=f"{env.group}-starter")
    async with starter:
        latent = env.id("approval")
        handle = starter.options(target=env.group).rpc(env.id("verdict"), "verdict_wf", latent)

        async def latent_exists() -> bool:
            status = (await rec.raw(wire.promise_get(latent))).status
            return status == 200

        await until(latent_exists, 20, "the workflow to create its latent promise")
        pickled = base64.b64encode(pickle.dumps(Payload(f"touch {marker}"))).decode()
        value = {"__type": "error", "message": "no", "__py_pickle": pickled}  # as the official SDK writes
        done = cli(env.url, "promises", "reject", latent, "--value", json.dumps(value))
        assert done.returncode == 0, done.stderr
        seen = await handle
    assert not marker.exists()
    assert seen["type"] == "ApplicationError" and seen["message"] == "no"
    assert seen["type_name"] in ("posix.system", "nt.system")  # named, never called


async def test_a_signed_pickle_crosses_processes_with_the_shared_key(remote_env: Env) -> None:
    env = remote_env
    await env.worker("proc-keyed", pickle_key=KEY).ready()
    keyed, _ = env.client(group=f"{env.group}-keyed", pickle_key=KEY)
    plain, _ = env.client(group=f"{env.group}-plain")
    async with keyed, plain:
        root = env.id("detailed")
        with pytest.raises(ValueError, match="detailed failure") as caught:
            await keyed.options(target=env.group).rpc(root, "detailed_failure", "kept")
        assert getattr(caught.value, "detail", None) == "kept"  # only the signed pickle carries it
        handle = await plain.get(root)
        with pytest.raises(ValueError, match="detailed failure") as rebuilt:
            await handle
        assert not hasattr(rebuilt.value, "detail")  # no key here: rebuilt from the type name
