"""What a web browser may do to the server: the Host allow-list, the Origin check and CORS.

A page on any web site can make a browser send requests to ``127.0.0.1``; three rules stop it from using a
local troth:

* **Host allow-list** (on by default when the server binds a loopback address; ``--allowed-host`` adds
  names, ``*`` turns it off): a request whose ``Host`` is not ``localhost``, a loopback address or a listed
  name gets ``421``. DNS rebinding points an attacker's name at 127.0.0.1, but the browser still sends the
  attacker's name as ``Host``, so the request is refused.
* **JSON only**: ``POST /`` requires ``Content-Type: application/json`` (``415`` otherwise). A cross-site
  form or a ``fetch`` with a "simple" content type needs no CORS preflight; ``application/json`` does, and
  the preflight fails unless the origin is allowed.
* **Origin check and CORS** (off by default; ``--cors-origin`` allows named origins, ``*`` any): a request
  carrying an ``Origin`` that is neither the server's own (same scheme-less host) nor allowed gets ``403``
  — including ``GET /poll``, which a page could otherwise open with ``EventSource`` and so take a worker's
  messages. Allowed origins get ``Access-Control-Allow-Origin`` on every answer, and ``OPTIONS`` preflights
  are answered here (``204``) before routing.

The Host check runs on every request, and parsing an address (``ipaddress``) costs more than the rest of
routing: its verdict for a raw ``Host`` value is cached, in a bounded LRU cache (``_host_verdict``), since
``Host`` is the client's to choose and must not make the server hold more.

Rejected: relying on CORS alone (CORS only hides answers from the page; the request itself still runs,
which is the harm here); checking ``Referer`` (often stripped); a CSRF token (our clients are programs,
not pages, and would all need changing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import msgspec

LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_ALLOW_METHODS: Final = b"GET, POST, OPTIONS"
_ALLOW_HEADERS: Final = b"Authorization, Content-Type"
_MAX_AGE: Final = b"600"
HOST_CACHE_SIZE: Final = 256
"""Most raw ``Host`` values whose name and loopback verdict are remembered (least recently used go)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is a loopback one."""
    name = host.strip("[]").rstrip(".").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """``Host`` header value → the name alone, lower case, without port or trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


@lru_cache(maxsize=HOST_CACHE_SIZE)
def _host_verdict(host: bytes) -> tuple[str, bool]:
    """A raw ``Host`` header value → its name (``_host_name``) and whether that is a loopback one."""
    name = _host_name(host.decode("latin-1"))
    return name, is_loopback(name)


class BrowserPolicy(msgspec.Struct, frozen=True):
    """``allowed_hosts``: names accepted in ``Host`` besides loopback ones (``None``: any host);
    ``cors_origins``: origins (``scheme://host[:port]``) allowed to call the API from a page, or ``*``."""

    allowed_hosts: frozenset[str] | None = frozenset()
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def build(cls, *, bind: str, allowed_hosts: Iterable[str], cors_origins: Iterable[str]) -> BrowserPolicy:
        hosts = {_host_name(h) for h in allowed_hosts if h}
        if "*" in hosts or (not hosts and not is_loopback(bind)):
            checked: frozenset[str] | None = None
        else:
            checked = frozenset(hosts)
        origins = frozenset(o.rstrip("/").lower() for o in cors_origins if o)
        return cls(checked, origins)

    def host_allowed(self, host: bytes | None) -> bool:
        if self.allowed_hosts is None or host is None:
            return True  # a browser always sends Host; a program that does not is no rebinding vector
        name, loopback = _host_verdict(host)
        return loopback or name in self.allowed_hosts

    def origin_allowed(self, origin: bytes | None, host: bytes | None) -> bool:
        """Whether a request with this ``Origin`` may run (no ``Origin``: not from a cross-site page)."""
        if origin is None:
            return True
        text = origin.decode("latin-1").strip().lower()
        if "*" in self.cors_origins or text in self.cors_origins:
            return True
        if host is not None:
            _, sep, rest = text.partition("://")
            if sep and rest == host.decode("latin-1").strip().lower():
                return True  # same origin
        return False

    def cors_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """Headers that let an allowed cross-origin page read the answer."""
        if origin is None or not self.cors_origins:
            return []
        text = origin.decode("latin-1").strip().lower()
        if "*" in self.cors_origins:
            return [(b"access-control-allow-origin", b"*")]
        if text in self.cors_origins:
            return [(b"access-control-allow-origin", origin.strip()), (b"vary", b"Origin")]
        return []

    def preflight(self, origin: bytes | None) -> list[tuple[bytes, bytes]] | None:
        """The headers of a ``204`` answer to an allowed preflight, or ``None`` (not allowed: ``403``)."""
        allow = self.cors_headers(origin)
        if not allow:
            return None
        return [
            *allow,
            (b"access-control-allow-methods", _ALLOW_METHODS),
            (b"access-control-allow-headers", _ALLOW_HEADERS),
            (b"access-control-max-age", _MAX_AGE),
        ]


def is_json(content_type: bytes | None) -> bool:
    """``application/json`` with any parameters (``; charset=utf-8``)."""
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"
