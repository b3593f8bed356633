"""Bursts of executes on bounded stream buffers (docs/operations/delivery.md#bursts): an ``execute`` that
does not fit a stream waits for room (or goes to another member with room) and never cuts the stream; only
an ``unblock`` that does not fit, or a stream whose socket takes nothing for ``STALL_MS``, does. The
``tiny_buffers`` server holds two unread frames per stream, one of them for executes."""

from __future__ import annotations

import pytest

from engine_harness import TARGET, Harness, quiesce
from troth.server import delivery
from troth.server.core import Outgoing
from troth.server.delivery import STALL_MS


async def test_a_burst_for_one_stream_waits_and_goes_out_as_it_drains(tiny_buffers: Harness) -> None:
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    ids = [f"b{n}" for n in range(10)]
    for id in ids:
        await h.create(id, target="poll://uni@default/w1")
    await quiesce()
    assert not w1.conn.closed
    assert w1.conn.pending == 1  # executes take half the buffer: the other half is kept for unblocks
    assert h.engine.delivery.waiting_count == 9
    got = []
    for _ in ids:  # each time its writer takes the buffer, the next waiting execute goes in
        got += [id for id, _ in await w1.executes()]
    assert got == ids  # all of them, in order, on the same stream
    assert h.engine.delivery.waiting_count == 0
    assert h.engine.metrics.sse_overflows._value.get() == 0


async def test_an_execute_that_does_not_fit_goes_to_the_member_with_room(tiny_buffers: Harness) -> None:
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    w2 = h.connect("default", "w2")
    for n in range(6):
        await h.create(f"f{n}", target=TARGET)
    await quiesce()
    # one in each buffer (the second always finds the emptiest member), four waiting for the group
    assert (w1.conn.pending, w2.conn.pending) == (1, 1)
    assert h.engine.delivery.waiting_count == 4
    # w2 reads and w1 does not: the waiting executes go to w2, none is stuck behind w1
    drained = []
    for _ in range(5):
        drained += [id for id, _ in await w2.executes()]
    assert len(drained) == 5 and h.engine.delivery.waiting_count == 0
    assert len(await w1.executes()) == 1
    assert not w1.conn.closed and not w2.conn.closed


async def test_an_unblock_that_does_not_fit_still_cuts_the_stream(tiny_buffers: Harness) -> None:
    """No timer sends an unblock again: a stream that cannot take one is a slow consumer, closed so that
    its worker reconnects (and asks again), even in the middle of a burst of executes."""
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    for n in range(5):
        await h.create(f"e{n}", target="poll://uni@default/w1")
    for n in range(2):
        await h.create(f"p{n}")
        await h.listen(f"p{n}", "poll://uni@default/w1")
    await h.settle("p0")  # fits: the half executes may not use
    await quiesce()
    assert not w1.conn.closed
    await h.settle("p1")
    await quiesce()
    assert w1.conn.closed and w1.conn.reason == "overflow"
    assert h.engine.metrics.sse_overflows._value.get() == 1


async def test_a_stream_that_takes_nothing_for_a_minute_is_cut(tiny_buffers: Harness) -> None:
    h = tiny_buffers
    idle = h.connect("default", "idle")
    stuck = h.connect("default", "stuck")
    await h.create("s0", target="poll://uni@default/stuck")
    await h.create("s1", target="poll://uni@default/stuck")
    await quiesce()
    assert stuck.conn.pending == 1 and not stuck.conn.closed
    await h.advance(STALL_MS - 1)
    await h.create("s2", target="poll://uni@default/stuck")
    await quiesce()
    assert not stuck.conn.closed  # slow, not yet stalled
    await h.advance(1)
    await h.create("s3", target="poll://uni@default/stuck")
    await quiesce()
    assert stuck.conn.closed and stuck.conn.reason == "stalled"
    assert h.engine.metrics.sse_stalls._value.get() == 1
    assert h.engine.metrics.sse_overflows._value.get() == 0
    assert not idle.conn.closed  # a stream with nothing to take is idle, never stalled
    # its executes wait for its next stream (the one lost in its buffer is sent again by its retry timer)
    again = h.connect("default", "stuck")
    got: set[str] = set()
    for _ in range(6):
        got |= {id for id, _ in await again.executes()}
    assert {"s1", "s2", "s3"} <= got


async def test_a_full_wait_list_drops_the_execute_and_keeps_the_stream(
    tiny_buffers: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded: past the wait list's bound an execute is dropped (counted), and the task's
    retry timer sends it again later."""
    monkeypatch.setattr(delivery, "MAX_WAITING", 3)
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    for n in range(6):
        await h.create(f"d{n}", target="poll://uni@default/w1")
    await quiesce()
    assert not w1.conn.closed
    assert h.engine.delivery.waiting_count == 3
    dropped = h.engine.metrics.messages.labels("execute", "dropped")._value.get()
    assert dropped == 2
    got = []
    for _ in range(4):
        got += [id for id, _ in await w1.executes()]
    assert got == ["d0", "d1", "d2", "d3"]


async def test_a_forwarded_execute_that_does_not_fit_waits_here(tiny_buffers: Harness) -> None:
    """A message another replica forwarded follows the same rules (``deliver_here``)."""
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    await h.create("r0", target="poll://uni@default/w1")
    await quiesce()
    assert h.engine.delivery.deliver_here(Outgoing("poll://uni@default/w1", "r1", 0))
    assert not w1.conn.closed and h.engine.delivery.waiting_count == 1
    assert [id for id, _ in await w1.executes()] == ["r0"]
    assert [id for id, _ in await w1.executes()] == ["r1"]


async def test_a_full_wait_list_makes_room_for_a_group_with_a_smaller_share(
    tiny_buffers: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One group's burst does not keep every other group out: with the list full, an execute of a group
    with fewer waiting takes the place of the oldest of the group with the most (dropped and counted; its
    retry timer sends it again), until the two have about the same share."""
    monkeypatch.setattr(delivery, "MAX_WAITING", 4)
    h = tiny_buffers
    w1 = h.connect("default", "w1")
    for n in range(5):  # one in w1's buffer, four waiting: the list is full
        await h.create(f"d{n}", target="poll://uni@default/w1")
    for n in range(3):  # no stream in "other" yet: they wait for its first member
        await h.create(f"o{n}", target="poll://any@other")
    await quiesce()
    assert h.engine.delivery.waiting_count == 4
    assert h.engine.metrics.messages.labels("execute", "dropped")._value.get() == 3  # d1, d2, then o2
    other = h.connect("other", "o")
    assert [id for id, _ in await other.executes()] == ["o0"]  # one in its buffer, o1 next
    assert [id for id, _ in await other.executes()] == ["o1"]
    got = []
    for _ in range(3):
        got += [id for id, _ in await w1.executes()]
    assert got == ["d0", "d3", "d4"]
