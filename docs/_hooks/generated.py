"""MkDocs hook: reference tables rendered from the code itself — the ``click`` commands and the metrics.

A page writes a marker on a line of its own and the hook replaces it with Markdown made from the live
objects, so a flag, an environment variable, a default, a help text or a metric cannot drift from the code:

- ``<!-- troth-cli: serve-options -->``: the table of ``troth serve`` options (flag, environment, default,
  meaning); ``troth dev`` takes the same ones;
- ``<!-- troth-cli: global-options -->``: the options every client command takes (``-S``, ``-T``, …);
- ``<!-- troth-cli: commands -->``: every client command with its usage, arguments and options;
- ``<!-- troth-cli: metrics -->``: every Prometheus metric a server exports (name, type, labels, meaning).

``tests/unit/test_docs.py`` renders the same functions and fails when an option has no help text or is
missing from the README. Rejected: a separate generator script whose output is committed (it goes stale
unless someone remembers to run it); ``mkdocs-click`` (one more dependency, and its tables do not show the
environment variables, which is half of what an operator looks for).
"""

from __future__ import annotations

import re
from typing import Any

import click

MARKER = re.compile(r"^<!-- troth-cli: ([a-z-]+) -->$", re.MULTILINE)


def _cli() -> click.Group:
    from troth.cli import cli

    return cli


def _cell(text: str) -> str:
    """Help text as one table cell: pipes, asterisks and angle brackets are literal, not Markdown."""
    for char in ("\\", "|", "*", "<"):
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ").strip()


def _flags(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        names = [*param.opts, *param.secondary_opts]
        return ", ".join(f"`{n}`" for n in sorted(names, key=len))
    return f"`{param.human_readable_name}`"


def _default(param: click.Option) -> str:
    if param.required:
        return "required"
    if param.is_flag and not param.multiple:
        return "off"
    if isinstance(param.show_default, str):
        return _cell(param.show_default)
    value = param.default
    if value is None or value == () or callable(value) or type(value).__name__ == "Sentinel":
        return "—"
    return f"`{value}`"


def _meaning(param: click.Option) -> str:
    text = _cell(param.help or "")
    kind = param.type
    if isinstance(kind, click.Choice):
        text += " One of " + ", ".join(f"`{c}`" for c in kind.choices) + "."
    elif isinstance(kind, click.IntRange) and (kind.min is not None or kind.max is not None):
        low = "" if kind.min is None else str(kind.min)
        high = "" if kind.max is None else str(kind.max)
        text += f" Range {low}…{high}." if high else f" At least {low}."
    if param.multiple:
        text += " Repeatable."
    return text.strip()


def _envvar(param: click.Option) -> str:
    env = param.envvar
    if not env:
        return "—"
    names = [env] if isinstance(env, str) else list(env)
    return ", ".join(f"`{n}`" for n in names)


def options_table(command: click.Command) -> str:
    """A Markdown table of a command's options (the help option left out)."""
    rows = ["| Option | Environment | Default | Meaning |", "|---|---|---|---|"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        rows.append(f"| {_flags(param)} | {_envvar(param)} | {_default(param)} | {_meaning(param)} |")
    return "\n".join(rows)


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    else:
        found.append((path, command))
    return found


def client_commands() -> list[tuple[list[str], click.Command]]:
    """Every client command of ``troth`` (not ``serve``/``dev``), as (path, command), sorted by path."""
    cli = _cli()
    return [(p, c) for p, c in _walk(cli, []) if p[0] not in ("serve", "dev")]


def _usage(path: list[str], command: click.Command) -> str:
    ctx = click.Context(command, info_name=" ".join(["troth", *path]))
    return " ".join(command.collect_usage_pieces(ctx))


def example(command: click.Command) -> str | None:
    """The command's example: the lines after ``Example:`` (or ``Examples:``) in its help (``\\b`` keeps them
    as written)."""
    lines = (command.help or "").splitlines()
    for n, line in enumerate(lines):
        if line.strip() in ("Example:", "Examples:"):
            rest = [x for x in lines[n + 1 :] if x.strip()]
            return "\n".join(x.strip() if i == 0 else "  " + x.strip() for i, x in enumerate(rest)) or None
    return None


def commands_reference() -> str:
    out: list[str] = []
    for path, command in client_commands():
        name = " ".join(path)
        out.append(f"### `troth {name}` {{ #{'-'.join(path)} }}")
        out.append("")
        out.append("```")
        out.append(f"troth {name} {_usage(path, command)}".rstrip())
        out.append("```")
        out.append("")
        if command.help:
            out.append(_cell(command.help.split("\n\n")[0]))
            out.append("")
            found = example(command)
            if found:
                out += ["Example:", "", "```", found, "```", ""]
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            out.append("Arguments: " + ", ".join(_flags(a) for a in arguments) + ".")
            out.append("")
        if any(isinstance(p, click.Option) and p.name != "help" for p in command.params):
            out.append(options_table(command))
            out.append("")
    return "\n".join(out)


def metrics_table() -> str:
    """The metrics of ``troth.server.metrics.Metrics``, in the order they are declared."""
    from prometheus_client.metrics import MetricWrapperBase

    from troth.server.metrics import Metrics

    rows = ["| Metric | Type | Labels | Meaning |", "|---|---|---|---|"]
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        family = metric.describe()[0]
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = ", ".join(f"`{label}`" for label in getattr(metric, "_labelnames", ())) or "—"
        rows.append(f"| `{name}` | {family.type} | {labels} | {_cell(family.documentation)} |")
    return "\n".join(rows)


def render(name: str) -> str:
    cli = _cli()
    if name == "serve-options":
        return options_table(cli.commands["serve"])
    if name == "global-options":
        return options_table(cli)
    if name == "commands":
        return commands_reference()
    if name == "metrics":
        return metrics_table()
    raise ValueError(f"unknown troth-cli marker {name!r}")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda m: render(m.group(1)), markdown)
