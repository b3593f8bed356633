"""``troth completion bash|zsh|fish``: print the shell completion script (click's own completion).

Install it once, e.g. ``troth completion bash > ~/.local/share/bash-completion/completions/troth`` or
``eval "$(troth completion zsh)"`` in ``~/.zshrc``; commands, options and choices (``--state``) complete.
Rejected: shipping the scripts as files (they would drift from the commands).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    Example:
      troth completion bash > ~/.local/share/bash-completion/completions/troth
    """
    from troth.cli import cli

    kind = get_completion_class(shell)
    if kind is None:  # pragma: no cover - the three choices are click's built-in shells
        raise click.UsageError(f"no completion for {shell}")
    click.echo(kind(cli, {}, "troth", "_TROTH_COMPLETE").source())


COMMANDS = [completion]
