"""``troth tree``: the call tree below a root promise, from the promises tagged with its origin.

Each line is a promise: its id, state, what it is (``rpc f``, ``run f``, ``sleep``, ``promise`` for an
external one), how long it took from creation to settlement and, for a rejection, the error as
``Type: message`` (decoded from the stored value, never unpickled). ``--json`` prints the nested tree with
the same facts (``durationMs``, ``error``) beside the raw records' times and values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click
from rich.text import Text

from troth.cli.client import client_command, client_for, search_pages
from troth.cli.render import (
    decode_data,
    emit_json,
    error_text,
    func_name,
    print_rich,
    show_duration,
    state_text,
    took,
)
from troth.protocol import messages
from troth.protocol.records import Promise, Value

# ─── tree ───────────────────────────────────────────────────────────────────────────────────────────────

_MARKS = {"pending": "🟡", "resolved": "🟢"}


def state_mark(state: str) -> str:
    return _MARKS.get(state, "🔴" if state.startswith("rejected") else "⚪")


def promise_kind(p: Promise) -> tuple[str | None, str | None]:
    """``(kind, func)``: kind is ``sleep``, ``rpc``, ``run``, ``promise`` (an external one) or ``None``."""
    func = func_name(p)
    if p.tags.get("resonate:timer") == "true":
        return "sleep", None
    scope = p.tags.get("resonate:scope")
    if p.tags.get("resonate:external") == "true" and func is None:
        return "promise", None
    if scope == "global":
        return "rpc", func
    if scope == "local":
        return "run", func
    return None, func


@dataclass
class Node:
    """One promise of the tree, with what ``tree`` says about it."""

    promise: Promise
    kind: str | None
    func: str | None
    forked_from: str | None
    duration_ms: int | None
    error: str | None
    children: list[Node] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.promise.id

    @property
    def state(self) -> str:
        return self.promise.state


def node_json(node: Node) -> dict[str, Any]:
    """A node as ``tree --json`` prints it: the promise's id, state, times and value, what it is, and its
    children."""
    p = node.promise
    out: dict[str, Any] = {"id": p.id, "state": p.state, "kind": node.kind, "func": node.func}
    out["createdAt"] = p.createdAt
    if p.settledAt is not None:
        out["settledAt"] = p.settledAt
    out["timeoutAt"] = p.timeoutAt
    out["value"] = p.value  # emit_json adds its decoded data
    if node.forked_from is not None:
        out["forkedFrom"] = node.forked_from
    if node.duration_ms is not None:
        out["durationMs"] = node.duration_ms
    if node.error is not None:
        out["error"] = node.error
    out["children"] = [node_json(c) for c in node.children]
    return out


def _failure(value: Value) -> str | None:
    ok, decoded = decode_data(value.data)
    return error_text(decoded) if ok else None


def build_tree(root: Promise, members: list[Promise]) -> Node:
    """The nested structure below ``root``; a promise whose parent is unknown hangs off the root."""
    nodes = {p.id: p for p in members}
    nodes[root.id] = root
    children: dict[str, list[Promise]] = {}
    for pid, p in nodes.items():
        if pid == root.id:
            continue
        parent = p.tags.get("resonate:parent")
        if parent is None or parent == pid or parent not in nodes:
            parent = root.id
        children.setdefault(parent, []).append(p)
    for group in children.values():
        group.sort(key=lambda q: (q.createdAt, q.id))

    seen: set[str] = set()

    def node(p: Promise) -> Node:
        seen.add(p.id)
        kind, func = promise_kind(p)
        error = _failure(p.value) if p.state.startswith("rejected") else None
        built = Node(p, kind, func, p.tags.get("troth:forked-from"), took(p), error)
        built.children = [node(c) for c in children.get(p.id, []) if c.id not in seen]
        return built

    return node(root)


def render_tree(tree: Node) -> list[Text]:
    lines = [_tree_label(tree)]

    def walk(node: Node, prefix: str) -> None:
        kids = node.children
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(Text(f"{prefix}{'└── ' if last else '├── '}") + _tree_label(child))
            walk(child, prefix + ("    " if last else "│   "))

    walk(tree, "")
    return lines


def _tree_label(node: Node) -> Text:
    text = Text(f"{node.id} {state_mark(node.state)} ") + state_text(node.state)
    described = " ".join(part for part in (node.kind, node.func) if part)
    if node.forked_from:
        described = (
            f"{described}, forked from {node.forked_from}" if described else f"forked from {node.forked_from}"
        )
    if described:
        text.append(f" ({described})")
    if node.duration_ms is not None:
        text.append(f" {show_duration(node.duration_ms)}", style="dim")
    if node.error:
        text.append(f"  {node.error}", style="red")
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
    root = client.call(messages.promise_get(root_id)).promise
    members, _ = search_pages(
        client,
        lambda at: messages.promise_search(tags={"resonate:origin": root_id}, limit=100, cursor=at),
        lambda page: page.promises,
        None,
        True,
    )
    built = build_tree(root, members)
    if as_json:
        emit_json(node_json(built))
    else:
        print_rich(Text("\n").join(render_tree(built)))


COMMANDS = [tree]
