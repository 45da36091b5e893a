"""expokit: build real paired exposure-correction datasets and train baselines on them.

Stages live in their own subpackages, imported lazily by the command-line program:
:mod:`expokit.capture`, :mod:`expokit.calibration`, :mod:`expokit.curation`,
:mod:`expokit.models`. Importing :mod:`expokit` has no side effects.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
