"""docs/cli.md is what the click commands say now."""

from __future__ import annotations

from pathlib import Path

import click

from expokit.cli_reference import cli_reference

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
