"""The ``expokit`` command: a thin click front, one module per command group.

``main`` (the console script) and ``cli`` (the root group) come from
:mod:`expokit.cli.main`; each group's module parses and prints, and the work is done by
functions of the stages (typed configs own defaults and validation). Shared option blocks
and error reporting live in :mod:`expokit.cli.common`.
"""

from expokit.cli.main import cli, main

__all__ = ["cli", "main"]
