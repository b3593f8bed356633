"""Fenced actions begun together go out together (docs/sdk/replay.md#durable-operations): a fan-out's
creates and settles travel as a few ``task.fence_batch`` requests, in call order, and a server that does
not know that kind (an official one answers ``400`` and applies nothing) gets one ``task.fence`` at a
time with the same outcome. Local mode and remote mode (a real ``troth serve``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sdk.conftest import Env
from sdk.support import Recording
from troth import Context, Troth
from troth.sdk.transport import HttpTransport, LocalTransport
from troth.testing import RecordingTransport

pytestmark = pytest.mark.timeout(120)


class Counting(RecordingTransport):
    """Counts the requests that reach the server by kind; with ``refuse_batches`` it answers
    ``task.fence_batch`` as a server without that kind does (``400``, nothing applied)."""

    def __init__(self, inner: Any, *, refuse_batches: bool = False) -> None:
        super().__init__(inner, respond=self._count)
        self.refuse_batches = refuse_batches
        self.kinds: Counter[str] = Counter()

    def _count(self, kind: str, data: dict[str, Any]) -> tuple[int, Any] | None:
        self.kinds[kind] += 1
        if kind == "task.fence_batch" and self.refuse_batches:
            return 400, f"Unknown operation: {kind}"
        return None


def client(env: Env, *, refuse_batches: bool = False) -> tuple[Troth, Recording, Counting]:
    inner = HttpTransport(env.url) if env.remote else LocalTransport()
    counting = Counting(inner, refuse_batches=refuse_batches)
    rec = Recording(counting)
    r = Troth(env.url if env.remote else None, group=env.group, transport=rec)
    env.clients.append(r)
    return r, rec, counting


async def leaf(ctx: Context, i: int) -> int:
    return i * i


async def fan(ctx: Context, n: int) -> int:
    futures = [ctx.run(leaf, i) for i in range(n)]
    return sum([await f for f in futures])


async def test_a_fan_out_goes_out_in_a_few_batches_in_call_order(env: Env) -> None:
    r, rec, counting = client(env)
    r.register(fan)
    root = env.id("fan")
    async with r:
        assert await r.run(root, fan, 50) == sum(i * i for i in range(50))
    assert rec.fenced_ids() == [f"{root}:{i}" for i in range(1, 51)]  # created in call order
    assert len(rec.fenced("promise.settle")) == 50
    assert all(e.inner_status == 200 for e in rec.of("task.fence"))
    # 100 fenced actions; the 50 creates went out before any leaf could finish
    assert counting.kinds["task.fence_batch"] >= 1
    assert counting.kinds["task.fence_batch"] + counting.kinds["task.fence"] < 100


async def test_a_server_without_fence_batches_gets_one_fence_at_a_time(env: Env) -> None:
    r, rec, counting = client(env, refuse_batches=True)
    r.register(fan)
    root = env.id("fan1")
    async with r:
        assert await r.run(root, fan, 20) == sum(i * i for i in range(20))
        assert await r.run(env.id("fan2"), fan, 5) == sum(i * i for i in range(5))
    assert counting.kinds["task.fence_batch"] == 1  # refused once, never tried again
    assert rec.fenced_ids()[:20] == [f"{root}:{i}" for i in range(1, 21)]
    assert counting.kinds["task.fence"] == 2 * 25
