"""The ``troth`` command line (docs/operations/cli.md): the root group, its global options and ``main``.

Each command group is a module of this package that declares ``COMMANDS`` (the ``click`` commands it adds
to ``troth``) and optionally ``ALIASES`` (hidden names, e.g. ``promise`` for ``promises``): ``serve``
(``serve``, ``dev``), ``promises``, ``tasks``, ``schedules``, ``invoke``, ``tree``, ``trees`` (``cancel``,
``fork``), ``limits`` (``limits``, ``queues``), ``token``. They share the
HTTP client (``troth.cli.client``), the option parsers (``troth.cli.params``) and the renderer
(``troth.cli.render``). Adding a command group is adding one module: the modules are found by
``pkgutil`` at start-up.

Every failure prints one line (``troth: <reason>``) and exits non-zero, never a traceback.

Rejected: one module holding every client command (it had grown past 1,000 lines); an explicit list of
the command modules here (each new group would touch this file as well); entry-point plugins (nothing
outside troth adds commands).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import click

from troth import __version__
from troth.cli.client import server_option_default

__all__ = ["cli", "main"]

_ALIASES: dict[str, str] = {}


class _Group(click.Group):
    """Resolves the aliases (``promise``, ``task``, ``schedule``, …) without listing them in help."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, _ALIASES.get(cmd_name, cmd_name))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="troth")
@click.option(
    "-S",
    "--server",
    default=server_option_default,
    show_default="TROTH_URL, then RESONATE_URL, else http://127.0.0.1:8001",
    help="Server URL for the client commands (replicas: several, comma-separated, tried in turn).",
)
@click.option(
    "-T", "--token", default=None, envvar="TROTH_TOKEN", help="Bearer token for the client commands."
)
@click.option(
    "--ca",
    default=None,
    envvar="TROTH_CA",
    metavar="FILE",
    help="CA bundle that signs the server's certificate (https:// servers).",
)
@click.option(
    "--client-cert",
    default=None,
    envvar="TROTH_CLIENT_CERT",
    metavar="PEM",
    help="Client certificate and key in one PEM file (a server with --tls-client-ca).",
)
def cli(server: str, token: str | None, ca: str | None, client_cert: str | None) -> None:
    """troth: durable execution for Python."""


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)
        _ALIASES.update(getattr(module, "ALIASES", {}))


_load_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors and failures print one line (``troth: …``), never a traceback."""
    try:
        cli.main(args=argv, prog_name="troth", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None and exc.ctx.parent else ""
        print(f"troth: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as exc:
        print(f"troth: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.Abort:
        print("troth: aborted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `troth promises search | head -1`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
