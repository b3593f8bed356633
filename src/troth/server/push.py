"""Where HTTP push may go: the ``--push-allow`` policy, checked when an address is accepted and again when
the server connects (docs/operations/push.md).

Entries are URL prefixes (``https://hooks.example.com/troth/``), host names (``hooks.example.com``,
``*.example.com``), IP addresses or CIDR blocks (``10.1.0.0/16``), ``*`` (any host whose addresses are
public) or ``none`` (no HTTP push at all). Without ``--push-allow`` the policy is ``*``. Loopback,
private, link-local, shared, reserved and multicast addresses are refused unless an entry names them: a
CIDR block containing the address, or a host or URL-prefix entry naming the host.

Two checks, because a name is not an address:

* **At create time** (``refusal``): a ``resonate:target``, a listener address or a schedule's target that
  the policy refuses is a ``400`` naming the address and the flag, before anything is stored. A literal
  IP and ``localhost`` are judged here; other names cannot be resolved on the request path.
* **At connect time** (``VettedResolver``): every name is resolved by us, addresses the policy refuses are
  dropped, and the connection goes to one of the vetted addresses, so a name that resolves to
  ``127.0.0.1`` only at push time (DNS rebinding) reaches nothing. Redirects are never followed and no
  proxy from the environment is used.

Rejected: resolving names at create time (slow, blocks the request path, and proves nothing about the
answer at push time); checking only at connect time (the user learns about a refused target only from a
metric, long after the request that named it succeeded).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any, Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from troth.protocol import requests as rq
from troth.protocol.address import Address, parse_address, valid_host

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HINT: Final = "loopback, private and link-local addresses need --push-allow"


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a unicast address of the public internet."""
    return ip.is_global and not ip.is_multicast


def _is_local_name(host: str) -> bool:
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost")


class PushPolicy:
    """A parsed ``--push-allow`` list. Raises ``ValueError`` (one line) for an entry it cannot read."""

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self.entries = tuple(e.strip() for e in entries if e.strip()) or ("*",)
        self.disabled = False
        self.public = False
        self.prefixes: list[str] = []
        self.prefix_hosts: set[str] = set()
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[IPNetwork] = []
        for entry in self.entries:
            self._add(entry)
        if self.disabled and len(self.entries) > 1:
            raise ValueError("--push-allow none cannot be combined with other entries")

    def _add(self, entry: str) -> None:
        lowered = entry.lower()
        if lowered == "none":
            self.disabled = True
        elif entry == "*":
            self.public = True
        elif lowered.startswith(("http://", "https://")):
            address = parse_address(entry)
            if address is None:
                raise ValueError(f"--push-allow {entry!r} is not a valid URL prefix")
            self.prefixes.append(entry)
            self.prefix_hosts.add(address.host.rstrip(".").lower())
        elif entry.startswith("*."):
            if not valid_host(entry[2:]):
                raise ValueError(f"--push-allow {entry!r} is not a valid host pattern")
            self.suffixes.append(lowered[1:])
        else:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                return
            except ValueError:
                pass
            if "/" in entry or not valid_host(entry):
                raise ValueError(
                    f"--push-allow {entry!r} is not a URL prefix, host, IP address or CIDR block"
                )
            self.hosts.add(lowered.rstrip("."))

    # ------------------------------------------------------------------------------------------ checks

    def names(self, host: str, *, prefixes: bool = False) -> bool:
        """Whether a host entry (or, with ``prefixes``, a URL-prefix entry) names ``host`` itself, so its
        private addresses are allowed too."""
        host = host.rstrip(".").lower()
        if prefixes and host in self.prefix_hosts:
            return True
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def allows_ip(self, ip: IPAddress, named: bool) -> bool:
        """Whether the server may connect to ``ip`` for a host that an entry ``named`` (or not)."""
        if any(ip in net for net in self.networks):
            return True
        if named:
            return True
        return self.public and is_public(ip)

    def refusal(self, raw: str) -> str | None:
        """Why an ``http(s)`` address is refused, or ``None`` when the policy allows it (so far as can
        be told without resolving its name)."""
        address = parse_address(raw)
        if address is None or address.scheme != "http":
            return None
        return self._refusal(address)

    def _refusal(self, address: Address) -> str | None:
        if self.disabled:
            return "HTTP push is disabled (--push-allow none)"
        host = address.host
        if any(_prefixed(address.raw, p) for p in self.prefixes):
            return None
        named = self.names(host)
        ip = _ip(host)
        if ip is not None:
            if self.allows_ip(ip, named):
                return None
            if not is_public(ip):
                return f"{ip} is not a public address ({_HINT})"
            return "not matched by --push-allow"
        if named:
            return None
        if not self.public:
            return "not matched by --push-allow"
        if _is_local_name(host):
            return f"{host} is a local name ({_HINT})"
        return None


def _prefixed(raw: str, prefix: str) -> bool:
    """``raw`` starts with ``prefix`` at a boundary: ``http://a.com`` does not cover ``http://a.com.evil``."""
    if not raw.startswith(prefix):
        return False
    if prefix.endswith("/") or len(raw) == len(prefix):
        return True
    return raw[len(prefix)] in "/?#"


def _fence_addresses(fence: rq.Fence) -> list[tuple[str, str]]:
    if not isinstance(fence.action, rq.PromiseCreate):
        return []
    target = fence.action.tags.get("resonate:target")
    return [] if target is None else [("resonate:target", target)]


def addresses(req: rq.Request) -> list[tuple[str, str]]:
    """The addresses a request would store, as (what, address) pairs: targets and listener addresses."""
    data: Any = req.data
    kind = req.kind
    if kind == "promise.create":
        tags = data.tags
    elif kind == "task.create":
        tags = data.action.data.tags
    elif kind == "task.fence" and isinstance(data.action, rq.PromiseCreate):
        tags = data.action.tags
    elif kind == "task.fence_batch":
        return [pair for fence in data.fences for pair in _fence_addresses(fence)]
    elif kind == "schedule.create":
        tags = data.promiseTags
    elif kind == "promise.register_listener":
        return [("listener", data.address)]
    else:
        return []
    target = tags.get("resonate:target")
    return [] if target is None else [("resonate:target", target)]


class PushRefused(OSError):
    """A push the policy refused at connect time (``strerror`` is the one-line reason)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)


class VettedResolver(AbstractResolver):
    """Resolves push hosts and keeps only the addresses the policy allows; none left is an error."""

    def __init__(self, policy: PushPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.policy.disabled:
            raise PushRefused(f"HTTP push to {host} refused: HTTP push is disabled")
        named = self.policy.names(host, prefixes=True)
        literal = _ip(host)
        if literal is not None:
            results: list[ResolveResult] = [
                {
                    "hostname": host,
                    "host": str(literal),
                    "port": port,
                    "family": socket.AF_INET6 if literal.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        else:
            results = await self.inner.resolve(host, port, family)
        allowed = []
        for r in results:
            ip = _ip(r["host"])
            if ip is not None and self.policy.allows_ip(ip, named):
                allowed.append(r)
        if not allowed:
            found = ", ".join(sorted({r["host"] for r in results})) or "nothing"
            raise PushRefused(f"HTTP push to {host} refused: it resolves to {found} ({_HINT})")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
