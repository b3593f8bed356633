"""Every bound the protocol puts on one request, in one place (docs/operations/limits.md).

A request that exceeds a bound is answered ``400`` with a one-line message naming the bound, before it
reaches the core, so nothing is stored and no cache holds any of it. The server's own bounds (connections,
buffers, push) are options of ``troth serve``; both kinds are listed in ``BOUNDS`` so the README table,
the docs page and the ``troth_limit`` gauge of ``/metrics`` say the same thing.

Rejected: bounds checked deep in the core or the store (a rejected request would already have cost a
transaction), and bounds derived only from the body size (2 MiB allows 60,000 tag filters, enough to make
SQLite refuse the query with a 500).
"""

from __future__ import annotations

from typing import Final

MAX_BODY_BYTES: Final = 2 * 1024 * 1024
"""Largest ``POST /`` body accepted; larger bodies get ``413``."""

MAX_ID_LENGTH: Final = 1024
"""Longest promise, task or schedule id, pid, group or search cursor, in characters (also a schedule's
promise id after its template is expanded)."""

MAX_TAGS: Final = 64
"""Most tags on one promise or schedule."""

MAX_TAG_KEY_LENGTH: Final = 256
"""Longest tag key, in characters."""

MAX_TAG_VALUE_LENGTH: Final = 4096
"""Longest tag value, in characters."""

MAX_TAG_FILTERS: Final = 16
"""Most tag filters in one ``promise.search`` or ``schedule.search``."""

MAX_ADDRESS_LENGTH: Final = 2048
"""Longest address (``resonate:target``, a listener address), in characters."""

MAX_INTEGER_DIGITS: Final = 19
"""Most digits of an integer carried in a string (``resonate:delay``): enough for any 64-bit time."""

MAX_CRON_LENGTH: Final = 256
"""Longest cron expression, in characters."""

MAX_BATCH: Final = 1000
"""Most tasks in one ``task.heartbeat``, actions in one ``task.suspend``, results in one search page."""

MAX_TREE: Final = 1000
"""Most promises one ``tree.cancel`` settles and one ``tree.fork`` copies in one transaction; a larger
cancel answers with a cursor to continue from, a larger fork is refused (docs/sdk/trees.md)."""

MAX_LIMITS: Final = 1000
"""Most limits set at the server (``limit.set``, by function or worker group;
docs/operations/limits-by-key.md)."""

SEARCH_SCAN_WINDOW: Final = 10_000
"""Most rows one filtered search page examines; a page that reaches it ends early with a cursor."""


class Bound:
    """One documented bound: its name (the ``troth_limit`` label), value, unit and meaning."""

    __slots__ = ("meaning", "name", "unit", "value")

    def __init__(self, name: str, value: int, unit: str, meaning: str) -> None:
        self.name = name
        self.value = value
        self.unit = unit
        self.meaning = meaning


PROTOCOL_BOUNDS: Final = (
    Bound("body_bytes", MAX_BODY_BYTES, "bytes", "POST / body (413 above)"),
    Bound("id_length", MAX_ID_LENGTH, "characters", "ids, pids, groups, cursors, expanded schedule ids"),
    Bound("tags", MAX_TAGS, "tags", "tags on one promise or schedule"),
    Bound(
        "tag_key_length", MAX_TAG_KEY_LENGTH, "characters", 'one tag key (no control characters, no " or \\)'
    ),
    Bound("tag_value_length", MAX_TAG_VALUE_LENGTH, "characters", "one tag value"),
    Bound("tag_filters", MAX_TAG_FILTERS, "filters", "tag filters in one search"),
    Bound(
        "address_length", MAX_ADDRESS_LENGTH, "characters", "one address (no control characters or spaces)"
    ),
    Bound("integer_digits", MAX_INTEGER_DIGITS, "digits", "an integer in a tag (resonate:delay)"),
    Bound(
        "cron_length", MAX_CRON_LENGTH, "characters", "one cron expression (one line; steps within the field)"
    ),
    Bound("batch", MAX_BATCH, "items", "heartbeat tasks, suspend actions, search page size"),
    Bound("tree", MAX_TREE, "promises", "promises one tree.cancel settles or one tree.fork copies"),
    Bound("search_scan_window", SEARCH_SCAN_WINDOW, "rows", "rows a filtered search page examines"),
    Bound("server_limits", MAX_LIMITS, "limits", "limits set at the server (limit.set)"),
)
