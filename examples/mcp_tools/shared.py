"""What the MCP server and the worker must agree on: the canonical coordinate text and the promise id.

Rust prints ``40.0`` as ``40`` and Python as ``40.0``; we pick the Rust form (the shortest text that
reads back as the same float, without a trailing ``.0``; ``-0`` becomes ``0``) and use it everywhere, so
``(40.0, -74.0)`` and ``(40, -74)`` are the same call: ``forecast-40--74``.
"""

from __future__ import annotations

import os

WORKER_GROUP = "workers"
GATEWAY_GROUP = "mcp-gateway"
DEFAULT_TROTH_URL = "http://127.0.0.1:8001"


def coord(value: float) -> str:
    """The canonical text of one coordinate."""
    number = float(value)
    if number == 0:
        number = 0.0  # no "-0"
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


def promise_id(latitude: float, longitude: float) -> str:
    """The durable promise id of a forecast call: identical inputs share one execution."""
    return f"forecast-{coord(latitude)}-{coord(longitude)}"


def troth_url() -> str:
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or DEFAULT_TROTH_URL
