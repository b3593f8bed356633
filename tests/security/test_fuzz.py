"""Fuzzing ``POST /`` of a real ``troth serve --debug`` from the shipped JSON Schema of every request kind
(``troth.protocol.schema``, through the strategies of ``schema_strategy``). For every generated request:
no 5xx, an answer within the client timeout (no hang), an HTTP status equal to ``head.status``, and a
refused request (4xx) changes nothing (``debug.snap`` before and after).

``TROTH_FUZZ_EXAMPLES`` raises the budget (default 1,000 requests: about 40 s on two quiet cores).
Timers are paused (``debug.start``) so the only changes are the requests' own; generated ``timeoutAt``
values are kept away from the test's own run time (and no ``resonate:debug_time`` is sent), so no
promise times out lazily in the middle of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.security.conftest import snap
from tests.security.schema_strategy import from_schema

from helpers import ServerProcess, now_ms
from troth.protocol.schema import load_schema

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

EXAMPLES = int(os.environ.get("TROTH_FUZZ_EXAMPLES", "1000"))
DAY = 86_400_000


def _strategy() -> st.SearchStrategy[dict[str, Any]]:
    schema = load_schema()
    branches = [
        from_schema(branch, schema["$defs"], wild=0.05)
        for branch in schema["oneOf"]
        if not branch["properties"]["kind"]["const"].startswith("debug.")
    ]
    return st.one_of(branches)


def _tame(obj: Any, now: int) -> Any:
    """``timeoutAt`` values in the near future move a day ahead (see the module docstring)."""
    if isinstance(obj, dict):
        # a debug time would move "now" itself, timing promises out lazily inside any request
        out = {k: _tame(v, now) for k, v in obj.items() if k != "resonate:debug_time"}
        t = out.get("timeoutAt")
        if isinstance(t, int) and now - DAY <= t <= now + DAY:
            out["timeoutAt"] = now + 2 * DAY
        return out
    if isinstance(obj, list):
        return [_tame(v, now) for v in obj]
    return obj


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:", args=["--debug"]) as proc:
        assert proc.post("debug.start", {})[0] == 200
        yield proc


def test_post_fuzz(fuzz_server: ServerProcess) -> None:
    client = httpx.Client(base_url=fuzz_server.url, timeout=30.0)
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        database=None,
    )
    @given(_strategy())
    def one(request: dict[str, Any]) -> None:
        request = _tame(request, now_ms())
        before = snap(fuzz_server)
        try:
            response = client.post("/", json=request)
        except httpx.TimeoutException:
            raise AssertionError(f"no answer within 30 s to {request!r:.500}") from None
        status = response.status_code
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (request, response.text[:500])
        assert response.headers.get("content-type") == "application/json"
        assert response.json()["head"]["status"] == status, response.text[:500]
        if status >= 400:
            assert snap(fuzz_server) == before, (request, response.text[:500])

    try:
        one()
    finally:
        client.close()
    print(f"fuzzed {sum(seen.values())} requests: statuses {dict(sorted(seen.items()))}")
    assert fuzz_server.returncode is None
    assert "Traceback" not in fuzz_server.stderr, fuzz_server.stderr[-3000:]
