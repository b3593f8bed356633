"""Promise ids (docs/sdk/replay.md#ids): roots, ``root:n`` children, ``root:1.n`` below them,
``root:d<16 hex>`` detached children."""

from __future__ import annotations

import hashlib
from typing import Final

from troth.sdk.errors import InvalidIdError

MAX_ID_LENGTH = 1024


def child_id(parent: str, n: int) -> str:
    """The ``n``-th child of ``parent``: ``root:n`` below a root, ``parent.n`` deeper down."""
    return f"{parent}.{n}" if ":" in parent else f"{parent}:{n}"


DETACHED_SEQ_TAG: Final = "troth:seq"
"""A detached child's tag: the call's sequence id its own id is made from (``detached_id``), so a fork can
name its copy the way the forked workflow's replay will (docs/sdk/trees.md#fork)."""


def detached_id(origin: str, seq_id: str) -> str:
    """A detached child's id: stable across replays, hanging off the lineage origin."""
    return f"{origin}:d{hashlib.blake2b(seq_id.encode(), digest_size=8).hexdigest()}"


def origin_of(id: str) -> str:
    return id.split(":", 1)[0]


def check_root_id(id: object) -> str:
    """A caller-chosen root id, or ``InvalidIdError`` saying what is wrong with it."""
    if not isinstance(id, str):
        raise InvalidIdError(f"a promise id must be a string, not {type(id).__name__}")
    if not id:
        raise InvalidIdError("a promise id must not be empty")
    if ":" in id:
        raise InvalidIdError(
            f"promise id {id!r} must not contain ':' (it separates a lineage from its children)"
        )
    if "\x00" in id:
        raise InvalidIdError(f"promise id {id!r} must not contain a NUL character")
    if len(id) > MAX_ID_LENGTH:
        raise InvalidIdError(f"promise id is {len(id)} characters long; at most {MAX_ID_LENGTH} are allowed")
    return id
