"""``troth tree``: the call tree below a root promise, from the promises tagged with its origin.

Each line is a promise: its id, state, what it is (``rpc f``, ``run f``, ``sleep``, ``promise`` for an
external one), how long it took from creation to settlement and, for a rejection, the error as
``Type: message`` (decoded from the stored value, never unpickled). ``--json`` prints the nested tree with
the same facts (``durationMs``, ``error``) beside the raw records' times and values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.text import Text

from troth.cli.client import client_command, client_for, record, search_pages
from troth.cli.render import (
    decode_data,
    emit_json,
    error_text,
    func_name,
    print_rich,
    show_duration,
    state_text,
    took,
    value_json,
)

# ─── tree ───────────────────────────────────────────────────────────────────────────────────────────────

_MARKS = {"pending": "🟡", "resolved": "🟢"}


def state_mark(state: Any) -> str:
    return _MARKS.get(str(state), "🔴" if str(state).startswith("rejected") else "⚪")


def promise_kind(p: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(kind, func)``: kind is ``sleep``, ``rpc``, ``run``, ``promise`` (an external one) or ``None``."""
    tags = p.get("tags") or {}
    func = func_name(p)
    if tags.get("resonate:timer") == "true":
        return "sleep", None
    scope = tags.get("resonate:scope")
    if tags.get("resonate:external") == "true" and func is None:
        return "promise", None
    if scope == "global":
        return "rpc", func
    if scope == "local":
        return "run", func
    return None, func


def build_tree(root: dict[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """The nested structure below ``root``; a promise whose parent is unknown hangs off the root."""
    nodes = {p["id"]: p for p in members if isinstance(p.get("id"), str)}
    nodes[root["id"]] = root
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

    seen: set[str] = set()

    def node(p: dict[str, Any]) -> dict[str, Any]:
        seen.add(p["id"])
        kind, func = promise_kind(p)
        out: dict[str, Any] = {"id": p["id"], "state": p.get("state"), "kind": kind, "func": func}
        for key in ("createdAt", "settledAt", "timeoutAt"):
            if key in p:
                out[key] = p[key]
        out["value"] = value_json(p.get("value", {}))
        forked = (p.get("tags") or {}).get("troth:forked-from")
        if isinstance(forked, str):
            out["forkedFrom"] = forked
        spent = took(p)
        if spent is not None:
            out["durationMs"] = spent
        if str(p.get("state", "")).startswith("rejected"):
            ok, decoded = decode_data((p.get("value") or {}).get("data"))
            failure = error_text(decoded) if ok else None
            if failure is not None:
                out["error"] = failure
        out["children"] = [node(c) for c in children.get(p["id"], []) if c["id"] not in seen]
        return out

    return node(root)


def render_tree(tree: dict[str, Any]) -> list[Text]:
    lines = [_tree_label(tree)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        kids = node["children"]
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(Text(f"{prefix}{'└── ' if last else '├── '}") + _tree_label(child))
            walk(child, prefix + ("    " if last else "│   "))

    walk(tree, "")
    return lines


def _tree_label(node: Mapping[str, Any]) -> Text:
    text = Text(f"{node['id']} {state_mark(node['state'])} ") + state_text(node["state"])
    described = " ".join(part for part in (node.get("kind"), node.get("func")) if part)
    if node.get("forkedFrom"):
        described = (
            f"{described}, forked from {node['forkedFrom']}"
            if described
            else f"forked from {node['forkedFrom']}"
        )
    if described:
        text.append(f" ({described})")
    if isinstance(node.get("durationMs"), int):
        text.append(f" {show_duration(node['durationMs'])}", style="dim")
    if node.get("error"):
        text.append(f"  {node['error']}", style="red")
    return text


@click.command("tree")
@click.argument("root_id", metavar="ROOT_ID")
@client_command
@click.pass_context
def tree(ctx: click.Context, root_id: str, as_json: bool) -> None:
    """Print the call tree below a root promise.

    \b
    Example:
      troth tree greet-1
    """
    client = client_for(ctx)
    root = record(client.call("promise.get", {"id": root_id}), "promise")
    members, _ = search_pages(
        client, "promise.search", "promises", {"tags": {"resonate:origin": root_id}, "limit": 100}, None, True
    )
    built = build_tree(root, members)
    if as_json:
        emit_json(built)
    else:
        print_rich(Text("\n").join(render_tree(built)))


COMMANDS = [tree]
