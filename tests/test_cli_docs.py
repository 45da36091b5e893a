"""docs/cli.md is what the click commands say now."""

from __future__ import annotations

from pathlib import Path

import click

from expokit.cli.reference import cli_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == cli_reference(), (
        "docs/cli.md is stale: run `python scripts/gen_cli_docs.py` and commit the result"
    )


def test_reference_covers_every_command_and_option() -> None:
    from expokit.cli import cli

    text = cli_reference(cli)
    for name in ("expokit demo", "expokit simulate", "expokit curate build", "expokit train",
                 "expokit calibrate sync", "expokit capture video"):  # fmt: skip
        assert f"## `{name}`" in text
    assert "--rank-map" in text and "--max-minutes" in text


def test_the_check_catches_a_changed_option() -> None:
    @click.group()
    def tool() -> None:
        """A tool."""

    @tool.command()
    @click.option("--size", default=1, help="How big.")
    def make(size: int) -> None:
        """Make it."""

    before = cli_reference(tool)
    make.params[0].help = "How large."
    assert cli_reference(tool) != before and "How large." in cli_reference(tool)


def test_reference_does_not_depend_on_earlier_invocations() -> None:
    """A subcommand invoked on its own first (as tests do) caches a help option without the
    root's "-h"; the reference must still come out the same (fresh process: order matters)."""
    import subprocess
    import sys

    code = (
        "from click.testing import CliRunner\n"
        "from expokit.cli import cli\n"
        "from expokit.cli.reference import cli_reference\n"
        "CliRunner().invoke(cli.commands['info'], ['--help'])\n"
        "CliRunner().invoke(cli.commands['curate'].commands['validate'], ['--help'])\n"
        "print(cli_reference(cli), end='')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == DOC.read_text(encoding="utf-8")
