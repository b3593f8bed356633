"""The dashboard's protocol client: every read and every action goes through ``Engine.handle``.

``Engine.handle`` is what ``POST /`` runs, so the dashboard is a client of the protocol like any other:
the same validation, the same authentication with the token the page sent (``401`` without one when
authentication is on), the same prefix rules (``403``, and searches limited to the token's prefix), and
the same metrics. The one addition is ``id_prefix`` on searches (``Engine.handle``), served by the
primary-key index of both stores.

Rejected: reading the store directly (it would bypass auth and the core's bounds); calling ourselves over
HTTP (a socket round trip per fragment for nothing, and a second copy of the TLS settings).
"""

from __future__ import annotations

import itertools
from typing import Any, Final

import msgspec

from troth.protocol.records import PROTOCOL_VERSION
from troth.server.engine import Engine

_encoder: Final = msgspec.json.Encoder()
_ids = itertools.count(1)

MAX_WINDOWS: Final = 3
"""Filtered search pages (each examining at most ``search_scan_window`` rows) one list page may use to
fill itself before it shows what it found with a link to the next page."""


class Answer(msgspec.Struct):
    status: int
    data: Any

    @property
    def ok(self) -> bool:
        return self.status < 300


class Calls:
    """Protocol requests on behalf of one page request (its bearer token, if any)."""

    def __init__(self, engine: Engine, token: str | None) -> None:
        self.engine = engine
        self.token = token

    async def call(self, kind: str, data: dict[str, Any], *, id_prefix: str = "") -> Answer:
        body = _encoder.encode(
            {
                "kind": kind,
                "head": {"corrId": f"ui-{next(_ids)}", "version": PROTOCOL_VERSION},
                "data": data,
            }
        )
        status, raw = await self.engine.handle(body, bearer=self.token, id_prefix=id_prefix)
        envelope = msgspec.json.decode(raw)
        return Answer(status, envelope.get("data"))

    async def search(
        self, kind: str, key: str, data: dict[str, Any], limit: int, *, id_prefix: str = ""
    ) -> tuple[Answer, list[dict[str, Any]], str | None]:
        """Up to ``limit`` records of a search, following the cursor through at most ``MAX_WINDOWS``
        pages (a filtered page may come back short); returns the last answer, the records and the cursor
        of what is left (``None``: nothing)."""
        found: list[dict[str, Any]] = []
        cursor = data.get("cursor")
        answer = Answer(200, {})
        for _ in range(MAX_WINDOWS):
            request = {**data, "limit": limit - len(found)}
            if cursor is not None:
                request["cursor"] = cursor
            answer = await self.call(kind, request, id_prefix=id_prefix)
            if not answer.ok:
                return answer, [], None
            found.extend(answer.data.get(key) or [])
            cursor = answer.data.get("cursor")
            if cursor is None or len(found) >= limit:
                break
        return answer, found, cursor
