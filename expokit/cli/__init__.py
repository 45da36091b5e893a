"""The ``expokit`` command: a thin click front, one module per command group.

``main`` (the console script) and ``cli`` (the root group) come from
:mod:`expokit.cli.main`; each group's module parses and prints, and the work is done by
functions of the stages (typed configs own defaults and validation). Shared option blocks
and error reporting live in :mod:`expokit.cli.common`.

Each command imports its stage inside the command function, on purpose: ``expokit --help``
and shell completion then start without loading OpenCV, rawpy or torch (every other module
imports at module level; ``tests/test_layering.py`` reads lazy imports too).
"""

from expokit.cli.main import cli, main

__all__ = ["cli", "main"]
