"""The command-line reference (``docs/cli.md``), generated from the click commands.

``python scripts/gen_cli_docs.py`` writes it; ``tests/test_cli_docs.py`` fails when the file
differs from what the commands say now, so the reference never goes stale.
"""

from __future__ import annotations

import click

HEADER = """# Command-line reference

Generated from the click commands by `python scripts/gen_cli_docs.py`; a test fails when
this file is stale. Every command also answers `--help`.
"""


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def command_help(command: click.Command, path: list[str]) -> str:
    """``--help`` text of ``command`` as invoked by ``path`` (no terminal-width wrapping)."""
    context = click.Context(command, info_name=" ".join(path), max_content_width=100,
                            terminal_width=100)  # fmt: skip
    return command.get_help(context).rstrip()


def cli_reference(root: click.Command | None = None) -> str:
    """Markdown of every command's help, in command-tree order."""
    if root is None:
        from expokit.cli import cli

        root = cli
    parts = [HEADER]
    for path, command in _walk(root, ["expokit"]):
        if command.hidden:
            continue
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{command_help(command, path)}\n```\n")
    return "\n".join(parts)
