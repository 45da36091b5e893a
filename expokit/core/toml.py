"""TOML parsing on every supported Python: ``tomllib`` (3.11+) or its backport ``tomli``.

Rig configs, build configs and training configs are TOML; this module is the one place that
chooses the parser, so the rest of the code imports :data:`TOMLDecodeError` and
:func:`loads` from here.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from tomllib import TOMLDecodeError, loads
else:  # Python 3.10: the same parser, published as tomli
    from tomli import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]
