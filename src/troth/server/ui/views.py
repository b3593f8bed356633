"""The dashboard's pages and fragments: what each one asks the protocol for, and its template.

A *page* (``/ui/promises``) is a shell with no data: navigation and a container that loads its
*fragment* (``/ui/f/promises``) with the page's query, through htmx, carrying the token the user gave.
So a page never needs a token, and every piece of data is read through the protocol under the token
(``troth.server.ui.calls``). Fragments render with Jinja2 and autoescaping on: ids, tags and values are
written by whoever can reach the server and are escaped wherever they appear.

To add a view (or a button to one), add a template under ``templates/`` and a function here returning
``(status, html)``, and name it in ``FRAGMENTS`` (and ``PAGES`` for a page of its own).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode

import jinja2

from troth.protocol.records import PROMISE_STATES, TASK_STATES
from troth.server.engine import Engine
from troth.server.ui import values
from troth.server.ui.calls import Answer, Calls
from troth.server.ui.feed import Feed

ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("troth.server.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates are package data: read once, never checked again
)
ENV.filters["when"] = values.when
ENV.filters["duration"] = values.duration
ENV.globals["urlencode"] = urlencode

PAGE_SIZE: Final = 50
RUNNING_LOOKUPS: Final = 30
"""Recently active workflows the overview reads to find up to ten running ones."""
TREE_LIMIT: Final = 1000
"""Steps of one workflow the tree shows (one search page); a larger tree says it is cut."""

Query = Mapping[str, str]
Html = tuple[int, str]


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)


def page(name: str, title: str, fragment: str, query: Query, *, live: str | None = None) -> str:
    """A page shell: navigation, and a container that loads ``/ui/f/<fragment>?<query>``."""
    source = f"/ui/f/{fragment}" + (f"?{urlencode(dict(query))}" if query else "")
    return render(
        "page.html", title=title, current=name, source=source, live=live, query=query, states=PROMISE_STATES
    )


class Views:
    """The fragments, each an async function of (calls, query) → (status, html)."""

    def __init__(self, engine: Engine, feed: Feed) -> None:
        self.engine = engine
        self.feed = feed

    def fragments(self) -> dict[str, Callable[[Calls, Query], Awaitable[Html]]]:
        return {
            "overview": self.overview,
            "promises": self.promises,
            "promise": self.promise,
            "actions": self.actions,
            "tasks": self.tasks,
            "schedules": self.schedules,
            "workers": self.workers,
            "queues": self.queues,
        }

    # --------------------------------------------------------------------------------------- refusals

    @staticmethod
    def refused(answer: Answer) -> Html:
        """A ``401``/``403`` (or other error) answer as a fragment the page shows in place."""
        return answer.status, render("refused.html", status=answer.status, message=str(answer.data))

    # --------------------------------------------------------------------------------------- overview

    async def overview(self, calls: Calls, query: Query) -> Html:
        # A search of one row proves the token. The counts, rates and streams are the whole server's, so
        # (as on /metrics) only an admin token, or a server without authentication, sees them.
        probe = await calls.call("promise.search", {"limit": 1})
        if not probe.ok:
            return self.refused(probe)
        auth = self.engine.auth
        principal = auth.authenticate(calls.token) if auth is not None else None
        whole = principal is None or principal.admin
        counts = self.engine.counts.as_dict()
        if self.engine.cluster is not None:
            counts = self.engine.cluster.counts_view(counts)
        running = await self._running(calls)
        return 200, render(
            "overview.html",
            whole=whole,
            counts=counts if whole else {},
            rate=self.feed.settle_rate(),
            lateness=_histogram_mean(self.engine.metrics.lateness),
            streams=self.engine.delivery.connection_count,
            running=running,
        )

    async def _running(self, calls: Calls) -> list[dict[str, Any]]:
        """Up to ten pending workflows, newest activity first: the roots the change feed saw change last,
        each read with ``promise.get`` (a key lookup, under the page's token). Right after a restart, when
        the feed has seen nothing yet, one filtered search page instead (``search_scan_window`` rows; run
        on every live refresh, that scan made an open overview cost the server far more)."""
        rows: list[dict[str, Any]] = []
        recent = self.feed.recent_roots()
        if recent:
            for id in recent[:RUNNING_LOOKUPS]:
                answer = await calls.call("promise.get", {"id": id})
                if answer.ok and answer.data["promise"]["state"] == "pending":
                    rows.append(_row(answer.data["promise"]))
                    if len(rows) == 10:
                        break
            return rows
        answer = await calls.call("promise.search", {"state": "pending", "limit": 100})
        found = (answer.data or {}).get("promises", []) if answer.ok else []
        return [r for r in map(_row, found) if r["root"]][:10]

    # --------------------------------------------------------------------------------------- promises

    async def promises(self, calls: Calls, query: Query) -> Html:
        data: dict[str, Any] = {}
        state = query.get("state") or None
        if state is not None:
            if state not in PROMISE_STATES:
                return 400, render("refused.html", status=400, message=f"Unknown state {state!r}")
            data["state"] = state
        tags = _tags(query.get("tags", ""))
        if tags is None:
            return 400, render(
                "refused.html", status=400, message="Tags are key=value pairs, comma-separated"
            )
        if tags:
            data["tags"] = tags
        if query.get("cursor"):
            data["cursor"] = query["cursor"]
        prefix = query.get("q", "")
        answer, found, cursor = await calls.search(
            "promise.search", "promises", data, PAGE_SIZE, id_prefix=prefix
        )
        if not answer.ok:
            return self.refused(answer)
        following = None
        if cursor is not None:
            following = "/ui/promises?" + urlencode(
                {**{k: v for k, v in query.items() if v}, "cursor": cursor}
            )
        return 200, render("promises.html", rows=[_row(p) for p in found], following=following, query=query)

    # ---------------------------------------------------------------------------------------- a promise

    async def promise(self, calls: Calls, query: Query) -> Html:
        id = query.get("id", "")
        answer = await calls.call("promise.get", {"id": id})
        if not answer.ok:
            return self.refused(answer)
        p = answer.data["promise"]
        root_id = (p.get("tags") or {}).get("resonate:origin") or p["id"]
        if root_id != p["id"]:
            root_answer = await calls.call("promise.get", {"id": root_id})
            root = root_answer.data["promise"] if root_answer.ok else p
        else:
            root = p
        below = await calls.call("promise.search", {"limit": TREE_LIMIT}, id_prefix=root["id"] + ":")
        members = (below.data or {}).get("promises", []) if below.ok else []
        tasks = await calls.call("task.search", {"limit": TREE_LIMIT}, id_prefix=root["id"])
        tries = (
            {t["id"]: t.get("version", 0) for t in (tasks.data or {}).get("tasks", [])} if tasks.ok else {}
        )
        members = [
            m for m in members if (m.get("tags") or {}).get("resonate:origin", root["id"]) == root["id"]
        ]
        steps = _timeline(_tree(root, members, tries), int(time.time() * 1000))
        return 200, render(
            "promise.html",
            p=_detail(p),
            steps=steps,
            cut=len(members) >= TREE_LIMIT,
            root_id=root["id"],
            root_href=_href(root["id"]),
        )

    async def actions(self, calls: Calls, query: Query) -> Html:
        """The settle buttons of one pending promise (a fragment of its own, so live refreshes of the
        tree never wipe a value being typed)."""
        answer = await calls.call("promise.get", {"id": query.get("id", "")})
        if not answer.ok:
            return self.refused(answer)
        p = answer.data["promise"]
        return 200, render("actions.html", p=p, latent=values.is_latent(p), message=query.get("message", ""))

    # ------------------------------------------------------------------------------ tasks, schedules

    async def tasks(self, calls: Calls, query: Query) -> Html:
        data: dict[str, Any] = {}
        state = query.get("state") or None
        if state is not None:
            if state not in TASK_STATES:
                return 400, render("refused.html", status=400, message=f"Unknown state {state!r}")
            data["state"] = state
        if query.get("cursor"):
            data["cursor"] = query["cursor"]
        answer, found, cursor = await calls.search(
            "task.search", "tasks", data, PAGE_SIZE, id_prefix=query.get("q", "")
        )
        if not answer.ok:
            return self.refused(answer)
        following = None
        if cursor is not None:
            following = "/ui/tasks?" + urlencode({**{k: v for k, v in query.items() if v}, "cursor": cursor})
        return 200, render(
            "tasks.html", rows=found, following=following, query=query, states=sorted(TASK_STATES)
        )

    async def schedules(self, calls: Calls, query: Query) -> Html:
        data: dict[str, Any] = {}
        if query.get("cursor"):
            data["cursor"] = query["cursor"]
        answer, found, cursor = await calls.search(
            "schedule.search", "schedules", data, PAGE_SIZE, id_prefix=query.get("q", "")
        )
        if not answer.ok:
            return self.refused(answer)
        rows = []
        for s in found:
            template = str(s.get("promiseId", ""))
            literal = template.split("{{", 1)[0]
            last: list[dict[str, Any]] = []
            if literal:
                # The promises a schedule made start with its template's literal part: the newest few.
                runs = await calls.call("promise.search", {"limit": 100}, id_prefix=literal)
                if runs.ok:
                    made = sorted(
                        (runs.data or {}).get("promises", []),
                        key=lambda p: p.get("createdAt", 0),
                        reverse=True,
                    )
                    last = made[:3]
            rows.append({"s": s, "last": last})
        following = None
        if cursor is not None:
            following = "/ui/schedules?" + urlencode(
                {**{k: v for k, v in query.items() if v}, "cursor": cursor}
            )
        return 200, render(
            "schedules.html", rows=rows, following=following, query=query, message=query.get("message", "")
        )

    async def workers(self, calls: Calls, query: Query) -> Html:
        probe = await calls.call("task.search", {"limit": 1})
        if not probe.ok:
            return self.refused(probe)
        auth = self.engine.auth
        principal = auth.authenticate(calls.token) if auth is not None else None
        cluster = self.engine.cluster
        here = cluster.id if cluster is not None else "this server"
        streams: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for key, n in self.engine.delivery.stream_counts().items():
            streams.setdefault(key, []).append((here, n))
        if cluster is not None:
            for key, replicas in cluster.remote_streams().items():
                streams.setdefault(key, []).extend((r, 0) for r in sorted(replicas))
        groups: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {}
        for (group, pid), held in sorted(streams.items()):
            if principal is not None and not (principal.owns(group) and principal.owns(pid)):
                continue
            groups.setdefault(group, []).append((pid, held))
        return 200, render("workers.html", groups=groups, replicas=cluster is not None, here=here)

    async def queues(self, calls: Calls, query: Query) -> Html:
        """The server's limits and its queues by key (docs/operations/limits-by-key.md#queues): both are
        server-wide, so with authentication only an admin token reads them (others get the ``403``)."""
        limits, found_limits, _ = await calls.search("limit.search", "limits", {}, PAGE_SIZE)
        if not limits.ok:
            return self.refused(limits)
        data: dict[str, Any] = {}
        if query.get("cursor"):
            data["cursor"] = query["cursor"]
        answer, found, cursor = await calls.search("queue.search", "queues", data, PAGE_SIZE)
        if not answer.ok:
            return self.refused(answer)
        rows = []
        for q in found:
            key = str(q.get("key", ""))
            group = key[1:] if key.startswith("@") else None
            rows.append({**q, "group": group, "function": key.split("/", 1)[0]})
        shown = [
            {
                "name": limit.get("name"),
                "group": limit.get("group"),
                "label": limit.get("name") or "@" + str(limit.get("group")),
                "concurrency": limit.get("concurrency"),
                "rate": _rate(limit.get("rate")),
            }
            for limit in found_limits
        ]
        following = None
        if cursor is not None:
            following = "/ui/queues?" + urlencode({"cursor": cursor})
        return 200, render("queues.html", limits=shown, queues=rows, following=following)


# ------------------------------------------------------------------------------------------------ helpers


def _rate(per_second: Any) -> str | None:
    """A rate in dispatches per second, as the CLI takes it: ``20/s``, ``30/m`` below one a second."""
    if not isinstance(per_second, int | float) or per_second <= 0:
        return None
    if per_second >= 1:
        return f"{per_second:g}/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:g}/m"
    return f"{per_second * 3600:g}/h"


def _tags(text: str) -> dict[str, str] | None:
    """``k=v, k2=v2`` → a dict (``None``: malformed)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            return None
        out[key.strip()] = value.strip()
    return out


def _href(id: str) -> str:
    return "/ui/promise?id=" + quote(id, safe="")


def _row(p: Mapping[str, Any]) -> dict[str, Any]:
    """What a list shows of a promise (its param decoded once)."""
    func, args = values.invocation(p)
    created, settled = p.get("createdAt"), p.get("settledAt")
    id = p.get("id", "")
    kind = values.kind(p, func, known=True)
    return {
        "id": id,
        "href": _href(id),
        "root": (p.get("tags") or {}).get("resonate:origin", id) == id,
        "state": p.get("state", ""),
        "kind": kind,
        "func": func or "",
        "args": args,
        "created": created,
        "settled": settled,
        "took": settled - created if isinstance(settled, int) and isinstance(created, int) else None,
        "latent": p.get("state") == "pending" and kind == "promise",
    }


def _detail(p: Mapping[str, Any]) -> dict[str, Any]:
    """What a page shows of a promise: the list's fields, its value, tags and deadline."""
    value = values.decode(p.get("value"))
    return {
        **_row(p),
        "value": value.text,
        "error": value.error,
        "tags": sorted((p.get("tags") or {}).items()),
        "timeout": p.get("timeoutAt"),
    }


def _tree(
    root: Mapping[str, Any], members: list[dict[str, Any]], tries: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The steps below ``root`` in tree order (depth first, siblings by creation), each with its ``depth``;
    a promise whose parent is unknown hangs off the root."""
    nodes = {p["id"]: p for p in members if isinstance(p.get("id"), str)}
    nodes[root["id"]] = dict(root)
    children: dict[str, list[dict[str, Any]]] = {}
    for pid, p in nodes.items():
        if pid == root["id"]:
            continue
        parent = (p.get("tags") or {}).get("resonate:parent")
        if not isinstance(parent, str) or parent == pid or parent not in nodes:
            parent = root["id"]
        children.setdefault(parent, []).append(p)
    for group in children.values():
        group.sort(key=lambda q: (q.get("createdAt") or 0, q["id"]))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    stack: list[tuple[Mapping[str, Any], int]] = [(root, 0)]
    while stack:
        step, depth = stack.pop()
        if step["id"] in seen:
            continue
        seen.add(step["id"])
        row = _detail(step)
        row["tries"] = tries.get(step["id"])
        row["depth"] = min(depth, 12)
        out.append(row)
        stack.extend((c, depth + 1) for c in reversed(children.get(step["id"], [])))
    return out


def _timeline(rows: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Each step as a bar: start and length in per mille of the workflow's span so far."""
    start = min((n["created"] for n in rows if isinstance(n["created"], int)), default=now)
    end = max([now if n["settled"] is None else n["settled"] for n in rows] + [start + 1])
    span = max(end - start, 1)
    for n in rows:
        created = n["created"] if isinstance(n["created"], int) else start
        finished = n["settled"] if isinstance(n["settled"], int) else end
        x = min((created - start) * 1000 // span, 996)
        n["x"] = x
        n["width"] = min(max((finished - created) * 1000 // span, 4), 1000 - x)
    return rows


def _histogram_mean(histogram: Any) -> float | None:
    """The mean of an unlabelled prometheus histogram, in its unit (``None`` before any sample)."""
    total = count = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return total / count if count else None
