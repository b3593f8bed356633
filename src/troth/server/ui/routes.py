"""The dashboard's routes under ``/ui``: pages, fragments, actions, the change feed and static assets.

=============================  ===============================================================
``GET /ui`` and ``/ui/<page>``  a page shell (overview, promises, promise, tasks, schedules, workers,
                                queues)
``GET /ui/f/<fragment>``        a fragment, read through the protocol under the page's token
``POST /ui/a/<action>``         ``settle`` (resolve, reject or cancel a pending promise) and
                                ``delete-schedule``: one protocol request each; ``cancel-tree``:
                                ``tree.cancel`` until the tree is done (``MAX_CANCEL_ROUNDS``)
``GET /ui/feed?topic=…``        the change feed (Server-Sent Events, ``troth.server.ui.feed``)
``GET /ui/static/<name>``       htmx, the page script and the style sheet, shipped in the wheel
=============================  ===============================================================

A fragment's answer carries ``Server-Timing: app;dur=<ms>``, the time the server spent on it (what
``benchmarks/dashboard.py`` reports). Every answer carries a strict Content-Security-Policy (scripts,
styles and connections from this origin only, no inline script or style, no frames, forms only to this
origin), ``nosniff`` and no referrer.
Fragments, actions and the feed require the ``HX-Request`` header that htmx and the page script send: a
cross-site page cannot add it without a CORS preflight, which fails (``troth.server.browser``), so a
form on another site cannot settle a promise through a browser that has the dashboard open (the Origin
check stops it first; this is the second lock). The token the user types is kept in the tab's
``sessionStorage`` and sent as ``Authorization: Bearer``; it is never put in a URL or a cookie.

Rejected: a cookie session (it would need CSRF tokens on every form and outlive the tab); a separate
port or process for the UI (one more thing to secure and to run); a framework router (three prefixes and
a dozen names; the API server is a plain ASGI callable too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qsl

from troth.protocol.limits import MAX_BODY_BYTES, MAX_ID_LENGTH
from troth.server.auth import bearer
from troth.server.bodies import ClientGone, read_body
from troth.server.counts import Delta
from troth.server.engine import Engine
from troth.server.ui import values
from troth.server.ui.calls import Calls
from troth.server.ui.feed import Feed
from troth.server.ui.views import Html, Views, page, render

log = logging.getLogger("troth.ui")

CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY: Final = [
    (b"content-security-policy", CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_HTML: Final = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"), *_SECURITY]
_STATIC: Final = {
    "htmx.min.js": b"text/javascript; charset=utf-8",
    "troth-ui.js": b"text/javascript; charset=utf-8",
    "troth-ui.css": b"text/css; charset=utf-8",
}
_PAGES: Final = {
    "": ("overview", "Overview", "overview", "all"),
    "promises": ("promises", "Promises", "promises", None),
    "promise": ("promises", "Promise", "promise", None),
    "tasks": ("tasks", "Tasks", "tasks", None),
    "schedules": ("schedules", "Schedules", "schedules", None),
    "workers": ("workers", "Workers", "workers", None),
    "queues": ("queues", "Queues", "queues", "all"),
}
MAX_CANCEL_ROUNDS: Final = 100
"""``tree.cancel`` requests one Cancel tree button makes (each settles up to 1,000 promises); a larger
tree says how far it got, and the button can be pressed again."""
KEEPALIVE: Final = 15.0
"""Seconds between keep-alive comments on an idle feed (a closed tab is then noticed)."""

Scope = Any
Send = Any
Receive = Any


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    hdrs = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class Ui:
    """The ``/ui`` sub-application; ``troth.server.http.App`` hands it every path under ``/ui``."""

    def __init__(self, engine: Engine, feed: Feed | None = None) -> None:
        self.engine = engine
        self.feed = feed or Feed()
        cluster = engine.cluster
        if cluster is None:
            engine.on_change = self.feed.publish
        else:  # replicas: pages here hear of the others' changes too (troth.server.ui.feed)
            publish = self.feed.publish

            def changed(delta: Delta) -> None:
                publish(delta)
                cluster.publish_changes(delta)

            engine.on_change = changed
            cluster.on_remote_changes = self.feed.publish_remote
        self.views = Views(engine, self.feed)
        self._fragments = self.views.fragments()
        self._assets: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        rest = path[len("/ui") :].strip("/")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if rest.startswith("static/"):
            await self._static(method, rest[len("static/") :], send)
            return
        if rest in _PAGES:
            if method not in ("GET", "HEAD"):
                await _answer(send, 405, b"", [(b"allow", b"GET")])
                return
            current, title, fragment, live = _PAGES[rest]
            if rest == "promise":
                live = _topic(query.get("id", ""))
            html = page(current, title, fragment, query, live=live)
            await _answer(send, 200, html.encode(), _HTML)
            return
        if not _from_page(scope):
            await _answer(send, 400, b"This address is for the dashboard's pages (HX-Request missing)", _HTML)
            return
        token = bearer(scope["headers"])
        if rest.startswith("f/"):
            view = self._fragments.get(rest[2:])
            if view is None or method != "GET":
                await _answer(send, 404, b"", _HTML)
                return
            started = time.perf_counter()
            status, html = await view(Calls(self.engine, token), query)
            body = html.encode()
            took = f"app;dur={(time.perf_counter() - started) * 1000:.2f}".encode()
            await _answer(send, status, body, [*_HTML, (b"server-timing", took)])
        elif rest.startswith("a/"):
            if method != "POST":
                await _answer(send, 405, b"", [(b"allow", b"POST")])
                return
            try:
                form = await _form(receive)
            except ClientGone:
                return  # cut off before its form was complete: nothing is done
            if form is None:
                await _answer(send, 413, b"Payload Too Large", _HTML)
                return
            status, html = await self._action(rest[2:], Calls(self.engine, token), form)
            await _answer(send, status, html.encode(), _HTML)
        elif rest == "feed":
            await self._feed(token, query.get("topic", "all"), receive, send)
        else:
            await _answer(send, 404, b"", _HTML)

    # ------------------------------------------------------------------------------------------ actions

    async def _action(self, name: str, calls: Calls, form: dict[str, str]) -> Html:
        id = form.get("id", "")
        if name == "settle":
            how = form.get("action", "")
            text = form.get("value", "").strip()
            if how == "resolve":
                try:
                    value = values.encode_json(json.loads(text) if text else None)
                except ValueError as exc:
                    message = f"The value is not JSON: {exc}"
                    return 400, render(
                        "actions.html", p={"id": id, "state": "pending"}, latent=True, message=message
                    )
                state = "resolved"
            elif how == "reject":
                value, state = values.rejection(text or "Rejected from the dashboard"), "rejected"
            elif how == "cancel":
                value, state = {"headers": {}}, "rejected_canceled"
            else:
                return 400, render("refused.html", status=400, message=f"Unknown action {how!r}")
            answer = await calls.call("promise.settle", {"id": id, "state": state, "value": value})
            if not answer.ok:
                return self.views.refused(answer)
            log.info("dashboard: %s %s", state, id)
            return await self.views.actions(calls, {"id": id, "message": f"{id} is now {state}."})
        if name == "cancel-tree":
            return await self._cancel_tree(id, form.get("include_detached") == "on", calls)
        if name == "delete-schedule":
            answer = await calls.call("schedule.delete", {"id": id})
            if not answer.ok:
                return self.views.refused(answer)
            log.info("dashboard: deleted schedule %s", id)
            return await self.views.schedules(calls, {"message": f"Schedule {id} deleted."})
        return 404, render("refused.html", status=404, message=f"Unknown action {name!r}")

    async def _cancel_tree(self, id: str, detached: bool, calls: Calls) -> Html:
        """``tree.cancel`` of ``id`` (docs/sdk/trees.md#cancel), following its cursor: the promise and
        every pending one below it, under the page's token (a prefix token cancels only its part)."""
        data: dict[str, Any] = {"id": id, "includeDetached": detached}
        canceled = 0
        for _ in range(MAX_CANCEL_ROUNDS):
            answer = await calls.call("tree.cancel", data)
            if not answer.ok:
                return self.views.refused(answer)
            canceled += len(answer.data.get("canceled") or [])
            cursor = answer.data.get("cursor")
            if not cursor:
                log.info("dashboard: canceled the tree of %s (%d promises)", id, canceled)
                message = f"Canceled the tree of {id}: {canceled} pending promise(s) canceled."
                return await self.views.actions(calls, {"id": id, "message": message})
            data["cursor"] = cursor
        message = f"Canceled {canceled} promises of the tree of {id} so far; Cancel tree again for the rest."
        return await self.views.actions(calls, {"id": id, "message": message})

    # --------------------------------------------------------------------------------------------- feed

    async def _feed(self, token: str | None, topic: str, receive: Receive, send: Send) -> None:
        owns = None
        auth = self.engine.auth
        if auth is not None:
            principal = auth.authenticate(token)
            if principal is None:
                await _answer(send, 401, b"Unauthorized", _HTML)
                return
            owns = None if principal.admin else principal.owns
        if not topic or len(topic) > MAX_ID_LENGTH:
            await _answer(send, 400, b"Bad topic", _HTML)
            return
        sub = self.feed.subscribe(topic, owns)
        if sub is None:
            log.warning("dashboard: %d change feeds open already; refused one more", self.feed.max_open)
            await _answer(send, 503, b"Too many open dashboards", _HTML)
            return
        pause = self.feed.coalesce_all if topic == "all" else self.feed.coalesce
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            *_SECURITY,
        ]

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            while True:
                got = await sub.next(KEEPALIVE)
                if got is None:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                ids, count = got
                data = json.dumps({"ids": ids, "count": count}, separators=(",", ":"))
                await send(
                    {
                        "type": "http.response.body",
                        "body": f"event: change\ndata: {data}\n\n".encode(),
                        "more_body": True,
                    }
                )
                await asyncio.sleep(pause)  # at most one event per period per page

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        writer = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.feed.unsubscribe(sub)
            for task in (writer, watcher):
                task.cancel()
            for task in (writer, watcher):
                with contextlib.suppress(asyncio.CancelledError, OSError, Exception):
                    await task

    # ------------------------------------------------------------------------------------------- static

    async def _static(self, method: str, name: str, send: Send) -> None:
        kind = _STATIC.get(name)
        if kind is None:
            await _answer(send, 404, b"", _HTML)
            return
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"", [(b"allow", b"GET")])
            return
        body = self._assets.get(name)
        if body is None:
            body = resources.files("troth.server.ui").joinpath("static", name).read_bytes()
            self._assets[name] = body
        headers = [(b"content-type", kind), (b"cache-control", b"public, max-age=300"), *_SECURITY]
        await _answer(send, 200, b"" if method == "HEAD" else body, headers)


def _from_page(scope: Scope) -> bool:
    return any(name == b"hx-request" and value == b"true" for name, value in scope["headers"])


def _topic(id: str) -> str:
    """The feed topic of a promise's page: the id before its first ``:`` (the workflow's root, as the SDK
    names steps ``root:1``, ``root:1.2``)."""
    return id.split(":", 1)[0] or "all"


async def _form(receive: Receive) -> dict[str, str] | None:
    """An urlencoded form body (``None``: over ``MAX_BODY_BYTES``)."""
    raw = await read_body(receive, MAX_BODY_BYTES)
    if raw is None:
        return None
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
