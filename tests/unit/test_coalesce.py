"""One write per response (``troth.server.coalesce``); cached Host verdicts (``troth.server.browser``)."""

from __future__ import annotations

import asyncio
from typing import Any

from troth.server.browser import HOST_CACHE_SIZE, BrowserPolicy, _host_verdict
from troth.server.coalesce import CoalescingTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def write(self, data: Any) -> None:
        self.events.append(bytes(data))

    def close(self) -> None:
        self.events.append("close")

    def abort(self) -> None:
        self.events.append("abort")

    def is_closing(self) -> bool:
        return "close" in self.events

    def get_write_buffer_size(self) -> int:
        return 0


async def test_a_head_goes_out_with_its_body_in_one_write() -> None:
    raw = Recording()
    out = CoalescingTransport(raw, asyncio.get_running_loop())
    out.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert raw.events == []
    out.write(b"{}")
    assert raw.events == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    out.write(b"more")  # not a head: written at once
    assert raw.events[-1] == b"more"
    await asyncio.sleep(0)
    assert len(raw.events) == 2  # the scheduled flush found nothing held


async def test_a_head_without_a_body_goes_out_at_the_next_loop_turn() -> None:
    raw = Recording()
    out = CoalescingTransport(raw, asyncio.get_running_loop())
    out.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")  # an SSE stream opening
    await asyncio.sleep(0)
    assert raw.events == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]
    out.write(b"data: 1\n\n")  # frames of the same response are never held
    assert raw.events[-1] == b"data: 1\n\n"


async def test_each_response_head_is_held_and_close_writes_it_first() -> None:
    raw = Recording()
    out = CoalescingTransport(raw, asyncio.get_running_loop())
    out.write(b"head1")
    out.write(b"body1")
    out.response_done()
    out.write(b"head2")
    assert raw.events == [b"head1body1"]
    assert out.get_write_buffer_size() == len(b"head2")
    out.close()
    assert raw.events == [b"head1body1", b"head2", "close"]
    await asyncio.sleep(0)
    assert raw.events == [b"head1body1", b"head2", "close"]


async def test_abort_drops_what_is_held() -> None:
    raw = Recording()
    out = CoalescingTransport(raw, asyncio.get_running_loop())
    out.write(b"head")
    out.abort()
    await asyncio.sleep(0)
    assert raw.events == ["abort"]


def test_host_verdicts_are_those_of_the_uncached_check_and_the_cache_is_bounded() -> None:
    policy = BrowserPolicy.build(bind="127.0.0.1", allowed_hosts=["example.com"], cors_origins=[])
    for host, allowed in [
        (b"127.0.0.1:8001", True),
        (b"[::1]:8001", True),
        (b"localhost.", True),
        (b"a.localhost:1", True),
        (b"EXAMPLE.com:443", True),
        (b"evil.example", False),
        (b"10.0.0.1", False),
        (b"127.0.0.1:8001", True),  # again: from the cache
    ]:
        assert policy.host_allowed(host) is allowed, host
    for n in range(HOST_CACHE_SIZE * 3):
        policy.host_allowed(f"attacker-{n}.example".encode())
    assert _host_verdict.cache_info().currsize <= HOST_CACHE_SIZE
