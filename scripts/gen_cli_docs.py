"""Write docs/cli.md from the click commands (run from the repository root)."""

from __future__ import annotations

from pathlib import Path

from expokit.cli.reference import cli_reference

TARGET = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

if __name__ == "__main__":
    TARGET.write_text(cli_reference(), encoding="utf-8")
    print(f"wrote {TARGET}")
