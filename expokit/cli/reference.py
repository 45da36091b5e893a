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


def _walk(
    command: click.Command, name: str, parent: click.Context | None = None
) -> list[tuple[str, click.Command, click.Context]]:
    """Every command below ``command`` with the context ``--help`` would give it: a child
    context inherits its parent's settings (``-h``, widths), as on the command line."""
    settings = {"max_content_width": 100, "terminal_width": 100} if parent is None else {}
    context = click.Context(
        command, info_name=name, parent=parent, **{**command.context_settings, **settings}
    )
    found = [(context.command_path, command, context)]
    if isinstance(command, click.Group):
        for child in sorted(command.commands):
            found += _walk(command.commands[child], child, context)
    return found


def command_help(command: click.Command, context: click.Context) -> str:
    """``--help`` text of ``command`` in ``context`` (fixed 100-column layout).

    click caches a command's help option the first time any context asks for it (8.1.8+),
    so a command invoked on its own earlier (e.g. by a test, without the root group's
    ``-h``) would keep ``--help`` only; the cache is set aside while the text is made.
    """
    cached = getattr(command, "_help_option", None)
    command._help_option = None
    try:
        return command.get_help(context).rstrip()
    finally:
        command._help_option = cached


def cli_reference(root: click.Command | None = None) -> str:
    """Markdown of every command's help, in command-tree order."""
    if root is None:
        from expokit.cli import cli

        root = cli
    parts = [HEADER]
    for path, command, context in _walk(root, "expokit"):
        if command.hidden:
            continue
        parts.append(f"## `{path}`\n\n```text\n{command_help(command, context)}\n```\n")
    return "\n".join(parts)
