"""Addresses (docs/protocol/delivery.md#addresses): where a message goes, parsed and validated.

``poll://any@<group>[/<id>]`` (anycast, preferring ``id``), ``poll://uni@<group>/<id>`` (unicast),
``http(s)://…`` (HTTP push); ``gcps://`` and ``bash://`` are valid but have no transport here, so their
messages are dropped at delivery time, as on the official server when a transport is disabled.

Syntax is checked strictly (docs/operations/limits.md): at most ``MAX_ADDRESS_LENGTH`` characters, no
control characters or spaces, an ``http(s)`` host that is a DNS name or an IP literal and a port in
1–65535, a ``poll`` group and id within the id length. Whether an ``http(s)`` address may be used at all
is the server's push policy (``troth.server.push``), not syntax.

Rejected: caching parsed addresses. The parse costs about a microsecond, and a cache keyed by the raw
text kept every rejected 1 MB target alive (``urlsplit`` has its own cache too, which the length check
in front of it keeps small).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal
from urllib.parse import urlsplit

import msgspec

from troth.protocol.limits import MAX_ADDRESS_LENGTH, MAX_ID_LENGTH

_HOSTNAME: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


class Address(msgspec.Struct, frozen=True):
    scheme: Literal["poll", "http", "gcps", "bash"]
    raw: str
    cast: Literal["any", "uni", ""] = ""
    group: str = ""
    id: str = ""
    host: str = ""
    """The host of an ``http(s)`` address (lower case, IPv6 without brackets)."""


def _clean(raw: str) -> bool:
    """No control characters, no whitespace, not too long."""
    if len(raw) > MAX_ADDRESS_LENGTH:
        return False
    return raw.isprintable() and not any(c.isspace() for c in raw)


def valid_host(host: str) -> bool:
    """A DNS name (letters, digits, ``-``, ``_``, dots) or an IP literal."""
    if not host or len(host) > 253 + 1:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None
    return True


def parse_address(raw: str) -> Address | None:
    """The parsed address, or ``None`` when ``raw`` is not a valid address."""
    if not _clean(raw):
        return None
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None
    scheme = parts.scheme
    if scheme == "poll":
        netloc = parts.netloc
        user, sep, group = netloc.partition("@")
        if not sep or user not in ("any", "uni") or not group or len(group) > MAX_ID_LENGTH:
            return None
        ident = parts.path[1:] if parts.path.startswith("/") else parts.path
        if len(ident) > MAX_ID_LENGTH:
            return None
        return Address("poll", raw, "any" if user == "any" else "uni", group, ident)
    if scheme in ("http", "https"):
        try:
            host = parts.hostname
            port = parts.port  # ValueError when out of 0-65535 or not a number
        except ValueError:
            return None
        if not host or not valid_host(host) or port == 0:
            return None
        return Address("http", raw, host=host)
    if scheme == "gcps":
        if not parts.netloc or not parts.path.strip("/"):
            return None
        return Address("gcps", raw)
    if scheme == "bash":
        return Address("bash", raw)
    return None
