"""The ``--push-allow`` policy as pure logic (docs/operations/push.md); the attacks themselves run against
a real server in tests/security/test_push_ssrf.py."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from troth.server.push import PushPolicy, PushRefused, VettedResolver


@pytest.mark.parametrize(
    ("entries", "target", "allowed"),
    [
        ((), "https://hooks.example.com/x", True),
        ((), "http://127.0.0.1/x", False),
        ((), "http://127.1.2.3:8080/x", False),
        ((), "http://[::ffff:10.0.0.1]/x", False),
        ((), "http://[fe80::1]/x", False),
        ((), "http://100.64.0.1/x", False),  # shared address space
        ((), "http://224.0.0.1/x", False),
        ((), "http://LOCALHOST./x", False),
        ((), "http://api.localhost/x", False),
        ((), "http://8.8.8.8/x", True),
        (("127.0.0.1",), "http://127.0.0.1:9/x", True),
        (("127.0.0.1",), "https://example.com/x", False),  # a list replaces the default '*'
        (("*", "10.0.0.0/8"), "http://10.1.2.3/x", True),
        (("*", "10.0.0.0/8"), "http://192.168.0.1/x", False),
        (("https://h.example/hooks/",), "https://h.example/hooks/a", True),
        (("https://h.example/hooks",), "https://h.example/hooks?x=1", True),
        (("https://h.example/hooks",), "https://h.example/hooksx", False),
        (("https://h.example",), "https://h.example.evil.com/", False),
        (("*.example.com",), "https://a.b.example.com/", True),
        (("*.example.com",), "https://example.com.evil/", False),
        (("internal.corp",), "http://internal.corp/x", True),
        (("internal.corp",), "http://other.corp/x", False),
        (("none",), "https://example.com/x", False),
    ],
)
def test_refusal(entries: tuple[str, ...], target: str, allowed: bool) -> None:
    reason = PushPolicy(entries).refusal(target)
    assert (reason is None) == allowed, reason


def test_poll_addresses_are_not_its_business() -> None:
    assert PushPolicy(("none",)).refusal("poll://any@g") is None


@pytest.mark.parametrize("entry", ["http://[bad", "a/b/c", "not a host", "*.", "none,*"])
def test_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="--push-allow"):
        PushPolicy(entry.split(","))


class _Fixed(AbstractResolver):
    def __init__(self, *ips: str) -> None:
        self.ips = ips

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for ip in self.ips
        ]

    async def close(self) -> None:
        pass


async def test_resolver_drops_refused_addresses() -> None:
    resolver = VettedResolver(PushPolicy(), _Fixed("127.0.0.1", "93.184.216.34"))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 80)] == ["93.184.216.34"]
    with pytest.raises(PushRefused, match=r"resolves to 127\.0\.0\.1"):
        await VettedResolver(PushPolicy(), _Fixed("127.0.0.1")).resolve("rebind.example", 80)


async def test_resolver_keeps_private_addresses_of_a_named_host() -> None:
    for entries in (("internal.corp",), ("http://internal.corp/hooks/",), ("*", "10.0.0.0/8")):
        got = await VettedResolver(PushPolicy(entries), _Fixed("10.0.0.7")).resolve("internal.corp", 80)
        assert [r["host"] for r in got] == ["10.0.0.7"]
