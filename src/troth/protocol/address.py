"""Addresses (PROTOCOL.md §6.3): where a message goes, parsed and validated.

``poll://any@<group>[/<id>]`` (anycast, preferring ``id``), ``poll://uni@<group>/<id>`` (unicast),
``http(s)://…`` (HTTP push); ``gcps://`` and ``bash://`` are valid but have no transport here, so their
messages are dropped at delivery time, as on the official server when a transport is disabled.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import msgspec


class Address(msgspec.Struct, frozen=True):
    scheme: Literal["poll", "http", "gcps", "bash"]
    raw: str
    cast: Literal["any", "uni", ""] = ""
    group: str = ""
    id: str = ""


@lru_cache(maxsize=4096)
def parse_address(raw: str) -> Address | None:
    """The parsed address, or ``None`` when ``raw`` is not a valid address."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None
    scheme = parts.scheme
    if scheme == "poll":
        netloc = parts.netloc
        user, sep, group = netloc.partition("@")
        if not sep or user not in ("any", "uni") or not group:
            return None
        ident = parts.path[1:] if parts.path.startswith("/") else parts.path
        return Address("poll", raw, "any" if user == "any" else "uni", group, ident)
    if scheme in ("http", "https"):
        if not parts.hostname:
            return None
        return Address("http", raw)
    if scheme == "gcps":
        if not parts.netloc or not parts.path.strip("/"):
            return None
        return Address("gcps", raw)
    if scheme == "bash":
        return Address("bash", raw)
    return None
